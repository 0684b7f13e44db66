"""The OmegaConf resolvers the configs use, apart from `facelift.run` so that an entry point registers them
without importing Lightning: a config error (``eval.py`` without ``ckpt=``) stops in about a second."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf


def repository_root() -> str:
    """The checkout holding ``conf/`` (the package's parent in an editable install), else the working directory."""
    root = Path(__file__).resolve().parents[1]
    return str(root if (root / "conf").is_dir() else Path.cwd())


def register_resolvers(root: Path | None = None) -> None:
    """Resolvers the configs use; idempotent so entry points and tests can call it freely.

    ``${facelift_root:}`` is the checkout: ``root`` (train.py and eval.py pass their own folder, which holds the
    ``conf/`` Hydra reads), else `repository_root`. Not ``${hydra:runtime.cwd}``: Hydra resolves ``hydra.sweep.dir``
    before its runtime node exists, so a multirun (``-m``) whose paths lean on it stops with a traceback; and the cwd
    is not the checkout when a command is typed elsewhere."""
    if not OmegaConf.has_resolver("join"):
        OmegaConf.register_new_resolver("join", lambda xs: "_".join(str(x) for x in xs) if xs else "run")
    if root is not None or not OmegaConf.has_resolver("facelift_root"):
        folder = str(Path(root).resolve()) if root is not None else None
        OmegaConf.register_new_resolver("facelift_root", (lambda: folder) if folder else repository_root,
                                        replace=True)
