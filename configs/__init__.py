# The built-in Hydra configs. Installed as the package `sweep.conf` (pyproject.toml maps this
# folder into the package), so an installed lrsweep finds them from any folder.
