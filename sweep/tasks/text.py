"""Text classification from a folder in the IMDB reviews layout: ``task=text task.path=DIR``.

Usage: ``data = build_text(cfg.task)`` (through ``sweep.tasks.build_task``). Layout::

    DIR/train/pos/*.txt   DIR/train/neg/*.txt    one review per file (UTF-8); training set
    DIR/test/pos/*.txt    DIR/test/neg/*.txt     validation set

Other files and folders (e.g. IMDB's ``train/unsup``) are ignored. Classes: neg = 0, pos = 1.
Files are read in name order; ``task.max_per_class`` keeps a random subset (fixed by
``task.data_seed``) of that many files per class and split, for quick runs.

Tokenizer (:func:`tokenize`), exactly: lowercase; replace HTML line breaks ``<br />`` (any
``<br>``, ``<br/>``, ``<br />``) by a space; turn the typographic apostrophe ``’`` into ``'``;
a token is a run of Unicode letters and digits, which may contain single apostrophes between
letters (``don't``, ``rock'n'roll``). Everything else (punctuation, ``_``, leading or trailing
quotes, hyphens) separates tokens: ``"Well-made, 10/10!"`` -> ``well made 10 10``.

Vocabulary: from the training reviews only; words by decreasing count, ties broken
alphabetically, capped so that ids fit in ``task.vocab_size``: id 0 is padding, id 1 an
out-of-vocabulary word, ids 2..vocab_size-1 the most frequent words. Each review keeps its
first ``task.max_len`` tokens (the opening of a review); shorter ones are padded with id 0 and
``lengths`` tells the model where each one ends (an empty review is one padding token).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from sweep.core.errors import UserError
from sweep.tasks.data import TaskData, task_from_arrays

SPLITS = ("train", "test")  # test/ is the validation set
CLASSES = ("neg", "pos")  # class ids 0, 1
PAD, OOV = 0, 1

_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_LAYOUT = (
    "pass a folder with train/pos, train/neg, test/pos, test/neg holding one review per .txt file"
)


def tokenize(text: str) -> list[str]:
    """The documented tokenizer (module docstring): lowercase word and number tokens."""
    return _TOKEN.findall(_BREAK.sub(" ", text.lower()).replace("\u2019", "'"))


def review_files(
    root: Path, split: str, label: str, max_per_class: int | None, data_seed: int
) -> list[Path]:
    """The .txt files of one split and class, in name order (a fixed random subset if capped)."""
    folder = root / split / label
    if not folder.is_dir():
        raise UserError(f"task.path: folder {root} has no {split}/{label} subfolder; {_LAYOUT}")
    files = sorted(p for p in folder.glob("*.txt") if p.is_file())
    if not files:
        raise UserError(f"task.path: folder {folder} holds no .txt files; {_LAYOUT}")
    if max_per_class is not None and len(files) > max_per_class:
        rng = np.random.default_rng([data_seed, SPLITS.index(split), CLASSES.index(label)])
        files = [files[i] for i in sorted(rng.choice(len(files), max_per_class, replace=False))]
    return files


def read_split(root: Path, split: str, cfg: Any) -> tuple[list[list[str]], np.ndarray]:
    """Token lists and labels [N] of one split (neg files first, then pos)."""
    docs: list[list[str]] = []
    labels: list[int] = []
    for label_id, label in enumerate(CLASSES):
        for f in review_files(root, split, label, cfg.max_per_class, cfg.data_seed):
            try:
                text = f.read_text(encoding="utf-8", errors="replace")
            except OSError as e:
                raise UserError(
                    f"task.path: cannot read {f} ({type(e).__name__}: {e.strerror}); "
                    "check the file's permissions"
                ) from None
            docs.append(tokenize(text))
            labels.append(label_id)
    return docs, np.asarray(labels, dtype=np.int64)


def build_vocab(docs: list[list[str]], vocab_size: int) -> dict[str, int]:
    """word -> id (2..vocab_size-1): most frequent first, ties broken alphabetically."""
    counts = Counter(w for doc in docs for w in doc)
    words = sorted(counts, key=lambda w: (-counts[w], w))[: vocab_size - 2]
    return {w: i + 2 for i, w in enumerate(words)}


def encode(
    docs: list[list[str]], vocab: dict[str, int], max_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids [N, T] (T = longest kept review, at most max_len) and lengths [N]."""
    ids = [[vocab.get(w, OOV) for w in doc[:max_len]] for doc in docs]
    lengths = np.asarray([max(1, len(d)) for d in ids], dtype=np.int64)
    x = np.full((len(ids), int(lengths.max())), PAD, dtype=np.int64)
    for i, d in enumerate(ids):
        x[i, : len(d)] = d
    return x, lengths


def build_text(cfg: Any) -> TaskData:
    root = Path(cfg.path).expanduser()
    if not root.exists():
        raise UserError(f"task.path: folder {root} does not exist; {_LAYOUT}")
    if not root.is_dir():
        raise UserError(f"task.path: {root} is a file, not a folder; {_LAYOUT}")
    if not any(root.iterdir()):
        raise UserError(f"task.path: folder {root} is empty; {_LAYOUT}")
    train_docs, y_tr = read_split(root, "train", cfg)
    val_docs, y_va = read_split(root, "test", cfg)
    vocab = build_vocab(train_docs, cfg.vocab_size)
    x_tr, l_tr = encode(train_docs, vocab, cfg.max_len)
    x_va, l_va = encode(val_docs, vocab, cfg.max_len)
    t = max(x_tr.shape[1], x_va.shape[1])  # one padded length for both splits
    x_tr = np.pad(x_tr, ((0, 0), (0, t - x_tr.shape[1])))
    x_va = np.pad(x_va, ((0, 0), (0, t - x_va.shape[1])))
    val_tokens = sum(min(len(d), cfg.max_len) for d in val_docs)
    info = {
        "path": str(root),
        "vocab_size": len(vocab) + 2,
        "training_words": len({w for d in train_docs for w in d}),
        "truncated_reviews": int(sum(len(d) > cfg.max_len for d in train_docs + val_docs)),
        "val_oov_rate": float((x_va == OOV).sum() / max(1, val_tokens)),
    }
    return task_from_arrays(
        "text",
        "classification",
        (x_tr, y_tr, l_tr),
        (x_va, y_va, l_va),
        output_dim=len(CLASSES),
        vocab_size=len(vocab) + 2,
        info=info,
    )
