"""task=text: IMDB-layout folders, the tokenizer, the vocabulary, truncation, bad folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sweep.config import TextTask, load_config
from sweep.core.errors import UserError
from sweep.tasks import build_task
from sweep.tasks.text import build_text, build_vocab, tokenize
from sweep.training import train_setting

POSITIVE = ["great", "wonderful", "loved", "superb", "fun"]
NEGATIVE = ["awful", "boring", "hated", "dull", "terrible"]
FILLER = ["the", "movie", "film", "plot", "actor", "scene", "was", "and", "a", "it"]


def write_reviews(root, n_train=20, n_test=10, seed=0):
    """A tiny IMDB-layout folder: each review has filler words and two words of its sentiment."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for label, words in (("pos", POSITIVE), ("neg", NEGATIVE)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                tokens = list(rng.choice(FILLER, size=rng.integers(4, 12))) + list(
                    rng.choice(words, size=2)
                )
                rng.shuffle(tokens)
                text = (
                    " ".join(tokens[:3]).capitalize() + ".<br /><br />" + " ".join(tokens[3:]) + "!"
                )
                (folder / f"{i}_{rng.integers(1, 10)}.txt").write_text(text, encoding="utf-8")
    (root / "train" / "unsup").mkdir()  # ignored, as in the real data set
    (root / "README").write_text("not a review")
    return root


def test_tokenizer_rules():
    assert tokenize("Don't <br /><br />watch THIS!!") == ["don't", "watch", "this"]
    assert tokenize("Well-made, 10/10! <BR>It\u2019s 'quoted' rock'n'roll_ok") == [
        "well",
        "made",
        "10",
        "10",
        "it's",
        "quoted",
        "rock'n'roll",
        "ok",
    ]
    assert tokenize("Café naïve") == ["café", "naïve"]  # Unicode letters stay
    assert tokenize("") == []


def test_vocabulary_most_frequent_first_ties_alphabetical_and_capped():
    docs = [["b", "a", "c", "c"], ["d", "a", "b", "e"]]
    assert build_vocab(docs, 100) == {"a": 2, "b": 3, "c": 4, "d": 5, "e": 6}
    assert build_vocab(docs, 5) == {"a": 2, "b": 3, "c": 4}  # 0 padding, 1 unknown, 3 words


def test_text_task_ids_lengths_and_truncation(tmp_path):
    root = write_reviews(tmp_path / "imdb")
    (root / "train" / "pos" / "zz_long.txt").write_text("superb " * 50)
    (root / "train" / "neg" / "zz_empty.txt").write_text("")
    task = build_text(TextTask(path=str(root), vocab_size=8, max_len=20))
    assert task.kind == "classification" and task.output_dim == 2 and task.vocab_size == 8
    assert task.x_train.dtype == torch.int64 and task.x_train.shape == (42, 20)
    assert task.n_train == 42 and task.x_val.shape[0] == 20
    assert (
        task.lengths_train.max() == 20 and task.lengths_train.min() == 1
    )  # the empty review: one pad
    assert int(task.x_train.max()) <= 7 and (task.x_train == 1).any()  # capped: unknown words -> 1
    valid = torch.arange(task.x_train.shape[1])[None, :] < task.lengths_train[:, None]
    assert (task.x_train[~valid] == 0).all()  # padding id 0 after each review
    assert torch.bincount(task.y_train).tolist() == [21, 21]  # neg = 0, pos = 1


def test_keeps_the_first_max_len_tokens(tmp_path):
    root = write_reviews(tmp_path / "imdb", n_train=1, n_test=1)
    for f in (root / "train" / "pos").glob("*.txt"):
        f.write_text("fun " * 3 + "plot " * 10)
    task = build_text(TextTask(path=str(root), max_len=4))
    vocab_fun = task.x_train[task.y_train == 1][0]
    assert vocab_fun[:3].unique().numel() == 1 and vocab_fun[3] != vocab_fun[0]


def test_max_per_class_subsamples_fixed_by_data_seed(tmp_path):
    root = write_reviews(tmp_path / "imdb", n_train=20, n_test=10)
    a = build_text(TextTask(path=str(root), max_per_class=5, data_seed=0))
    b = build_text(TextTask(path=str(root), max_per_class=5, data_seed=0))
    c = build_text(TextTask(path=str(root), max_per_class=5, data_seed=1))
    assert a.n_train == 10 and a.x_val.shape[0] == 10
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)


def test_text_task_learns_through_the_embedding(tmp_path):
    root = write_reviews(tmp_path / "imdb", n_train=40, n_test=20)
    cfg = load_config(
        [
            "task=text",
            f"task.path={root}",
            "task.vocab_size=50",
            "model.hidden_size=12",
            "model.layers=1",
            "model.embedding_dim=8",
            "optimizer=adam",
            "epochs=6",
        ]
    )
    task = build_task(cfg.task)
    (r,) = train_setting(
        task, cfg, {"lr": 0.03, "clip": 1.0, "batch_size": 16}, [0], torch.device("cpu")
    )
    assert r.nonfinite is None and r.curves["train_loss"][-1] < 0.8 * r.curves["train_loss"][0]
    assert max(r.curves["val_acc"]) >= 0.75  # the sentiment words separate the classes


@pytest.mark.parametrize(
    "layout,needle",
    [
        ("missing", "does not exist"),
        ("file", "is a file, not a folder"),
        ("empty", "is empty"),
        ("no_neg", "has no train/neg subfolder"),
        ("no_txt", "holds no .txt files"),
    ],
)
def test_bad_folders_raise_one_line_user_errors(tmp_path, layout, needle):
    root = tmp_path / "imdb"
    if layout == "file":
        root.write_text("x")
    elif layout == "empty":
        root.mkdir()
    elif layout == "no_neg":
        write_reviews(root, n_train=2, n_test=2)
        for f in (root / "train" / "neg").iterdir():
            f.unlink()
        (root / "train" / "neg").rmdir()
    elif layout == "no_txt":
        write_reviews(root, n_train=2, n_test=2)
        for f in (root / "test" / "pos").iterdir():
            f.rename(f.with_suffix(".md"))
    with pytest.raises(UserError) as info:
        build_text(TextTask(path=str(root)))
    message = str(info.value)
    assert message.startswith("task.path: ") and needle in message and "\n" not in message
    assert "train/pos, train/neg, test/pos, test/neg" in message  # says how to fix it


@pytest.mark.parametrize(
    "override,needle",
    [
        ("task.vocab_size=2", "task.vocab_size: must be >= 3"),
        ("task.max_len=0", "task.max_len: must be >= 1 token"),
        ("task.max_per_class=0", "task.max_per_class: must be >= 1 or null"),
    ],
)
def test_bad_text_options(tmp_path, override, needle):
    with pytest.raises(UserError, match=needle.replace(".", r"\.")):
        load_config(["task=text", f"task.path={tmp_path}", override])


def test_text_path_is_required():
    with pytest.raises(UserError, match="task.path: must name a folder in the IMDB layout"):
        load_config(["task=text"])
