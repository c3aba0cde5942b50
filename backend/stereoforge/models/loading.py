"""Models loaded the way their libraries load them: a Hugging Face id or a local folder.

:func:`locate` finds a model without loading it: a local folder, or a Hugging Face id in the local cache (or on
the hub when the machine may download). Offline (``HF_HUB_OFFLINE=1``) nothing is downloaded, and a model that
is not on the machine is one :class:`~stereoforge.errors.InputError` that names it and says how to fetch it.

:func:`load_pipeline` (diffusers) and :func:`load_transformers` then load through ``from_pretrained``, with
safetensors preferred (the libraries fall back to ``.bin`` files through ``torch.load(weights_only=True)``),
never ``trust_remote_code`` unless asked, and place the model as :class:`LoadOptions` says: device, dtype, CPU
offload, attention slicing, VAE tiling.

Loaded models stay in :data:`_CACHE`, one per stage, so a job server reuses them between jobs;
:func:`release` drops them and frees GPU memory.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..errors import InputError
from ..spec import MODEL_DTYPES, OFFLOAD_MODES, model_dtype

DTYPES = {"auto": None, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

Log = Callable[[str], None]


def offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` asks for no downloads (the value the hub libraries honour)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class LoadOptions:
    """Where and how a model runs.

    Attributes:
        device: ``auto`` (CUDA when torch sees a GPU, else CPU), ``cpu``, ``cuda``, ``cuda:1``, ``mps``.
        dtype: ``auto`` (bfloat16 on a GPU that has it, else float16 on a GPU, float32 on the CPU), ``float32``,
            ``float16``, ``bfloat16``.
        offload: ``none``; ``model`` moves each sub-model to the GPU only while it runs (diffusers'
            ``enable_model_cpu_offload``: a little slower, much less VRAM); ``sequential`` streams layer by layer
            (slowest, least VRAM). Needs a GPU and ``accelerate``.
        attention_slicing: compute attention in slices (less memory, where the pipeline has it).
        vae_tiling: decode (and encode) with the VAE tile by tile (large frames in bounded memory).
        trust_remote_code: let a model run code from its repository. Off unless the user asks.
        revision: a branch, tag or commit of a hub model.
    """

    device: str = "auto"
    dtype: str = "auto"
    offload: str = "none"
    attention_slicing: bool = False
    vae_tiling: bool = False
    trust_remote_code: bool = False
    revision: str | None = None

    def check(self) -> None:
        if model_dtype(self.dtype) not in DTYPES:
            raise InputError(f"--dtype {self.dtype!r} is not one of {', '.join(MODEL_DTYPES)}")
        if self.offload not in OFFLOAD_MODES:
            raise InputError(f"--offload {self.offload!r} is not one of {', '.join(OFFLOAD_MODES)}")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"--device {name!r} is not a torch device ({exc}); use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: this torch ({torch.__version__}) sees no CUDA GPU; use --device cpu "
                         "or install a CUDA build of torch")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if model_dtype(name) not in DTYPES:
        raise InputError(f"--dtype {name!r} is not one of {', '.join(MODEL_DTYPES)}")
    dtype = DTYPES[model_dtype(name)]
    if dtype is not None:
        return dtype
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # Half precision on the CPU is slow or unsupported for many kernels.
    return torch.float32


# ----------------------------------------------------------------------------------------------- locating


@dataclass
class ModelRef:
    """A model found on this machine (or fetchable), before loading.

    Attributes:
        id: as the user gave it (a hub id or a folder).
        folder: the local folder holding it (a snapshot of the cache for hub ids), or ``None`` when it is still
            to be downloaded.
        library: ``diffusers`` (a pipeline: ``model_index.json``) or ``transformers`` (``config.json``).
        class_name: the pipeline class (``_class_name``) or the model's first architecture / model type.
        revision: the commit of a cached hub snapshot, else the revision asked for.
        config: the parsed ``model_index.json`` or ``config.json``.
    """

    id: str
    folder: str | None
    library: str | None
    class_name: str | None
    revision: str | None
    config: dict = field(default_factory=dict)

    @property
    def source(self) -> str:
        """What to pass to ``from_pretrained``."""
        return self.folder if self.folder and os.path.isdir(self.id) else self.id


def _looks_like_path(model_id: str) -> bool:
    # Hub ids are "name" or "owner/name"; anything else with a slash is meant as a folder.
    return (os.path.isabs(model_id) or model_id.startswith((".", "~")) or model_id.count("/") > 1
            or model_id.endswith("/") or "\\" in model_id)


def how_to_fetch(model_id: str) -> str:
    return (f"on a machine with internet, run `hf download {model_id}` (or `huggingface-cli download {model_id}`) "
            "and copy its Hugging Face cache (~/.cache/huggingface/hub, or $HF_HOME/hub) to this machine, or run "
            f"`hf download {model_id} --local-dir DIR`, copy DIR here and pass the folder instead of the id")


def missing_model(model_id: str, stage: str, reason: str) -> InputError:
    return InputError(f"{stage} model '{model_id}' {reason}; {how_to_fetch(model_id)}")


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read '{path}' ({exc}); the model folder is incomplete: fetch it again") from None


def describe_folder(folder: str) -> tuple[str | None, str | None, dict]:
    """``(library, class_name, config)`` of a model folder, from ``model_index.json`` or ``config.json``."""
    index = os.path.join(folder, "model_index.json")
    if os.path.isfile(index):
        config = _read_json(index)
        return "diffusers", config.get("_class_name"), config
    cfg = os.path.join(folder, "config.json")
    if os.path.isfile(cfg):
        config = _read_json(cfg)
        if "_class_name" in config:  # a single diffusers model (a UNet, a VAE), not a pipeline
            return "diffusers-model", config["_class_name"], config
        names = config.get("architectures") or [config.get("model_type")]
        return "transformers", names[0], config
    return None, None, {}


def _cached_file(model_id: str, revision: str | None) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    for name in ("model_index.json", "config.json"):
        try:
            found = try_to_load_from_cache(model_id, name, revision=revision)
        except ValueError:  # not a valid repo id
            return None
        if isinstance(found, str):
            return found
    return None


def locate(model_id: str, stage: str, revision: str | None = None) -> ModelRef:
    """Find ``model_id`` (a folder or a hub id) without loading it.

    Raises:
        InputError: a folder that does not exist or holds no model; a hub id that is not in the local cache
            when offline; an id that is neither a folder nor a valid hub id.
    """
    model_id = os.path.expanduser(model_id)
    if os.path.isdir(model_id):
        library, class_name, config = describe_folder(model_id)
        if library is None:
            raise InputError(f"{stage} model folder '{model_id}' holds neither model_index.json (a diffusers "
                             "pipeline) nor config.json (a transformers model); give the folder that "
                             "`save_pretrained` or `hf download --local-dir` wrote")
        return ModelRef(model_id, os.path.abspath(model_id), library, class_name, revision, config)
    if os.path.exists(model_id):
        raise InputError(f"{stage} model '{model_id}' is a file; give the folder holding the model "
                         "(with its model_index.json or config.json)")
    if _looks_like_path(model_id):
        raise InputError(f"{stage} model folder '{model_id}' does not exist; check the path, or give a Hugging "
                         "Face id such as 'depth-anything/Depth-Anything-V2-Small-hf'")
    cached = _cached_file(model_id, revision)
    if cached is not None:
        folder = os.path.dirname(cached)
        library, class_name, config = describe_folder(folder)
        return ModelRef(model_id, folder, library, class_name, os.path.basename(folder), config)
    if model_id.count("/") > 1 or not model_id.strip():
        raise InputError(f"{stage} model '{model_id}' is neither a folder nor a Hugging Face id (owner/name)")
    if offline():
        raise missing_model(model_id, stage, "is not in the local Hugging Face cache and HF_HUB_OFFLINE is set, "
                                             "so nothing is downloaded")
    return ModelRef(model_id, None, None, None, revision)


def refresh(ref: ModelRef) -> ModelRef:
    """After a download: the same model, described from its cached snapshot."""
    if ref.folder is not None:
        return ref
    cached = _cached_file(ref.id, ref.revision)
    if cached is None:
        return ref
    folder = os.path.dirname(cached)
    library, class_name, config = describe_folder(folder)
    return ModelRef(ref.id, folder, library, class_name, os.path.basename(folder), config)


# ------------------------------------------------------------------------------------------------ loading


def _hub_kwargs(ref: ModelRef, options: LoadOptions) -> dict:
    local = os.path.isdir(ref.id)
    kwargs = {"local_files_only": offline() or local}
    if options.revision and not local:
        kwargs["revision"] = options.revision
    if options.trust_remote_code:
        kwargs["trust_remote_code"] = True
    return kwargs


def _loading_failed(ref: ModelRef, stage: str, exc: Exception) -> InputError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, (OSError, ConnectionError)) and (ref.folder is None or not os.path.isdir(ref.id)):
        return missing_model(ref.id, stage, f"could not be loaded ({text})")
    if "trust_remote_code" in str(exc):
        return InputError(f"{stage} model '{ref.id}' needs to run code from its repository, which StereoForge "
                          "does not allow by default; read that code, then pass --trust-remote-code")
    return InputError(f"{stage} model '{ref.id}' could not be loaded: {text}")


def _quiet_loading() -> None:
    """No per-component loading bars: the job reports 'loading model' itself (download bars stay)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def load_pipeline(ref: ModelRef, options: LoadOptions, stage: str, log: Log | None = None):
    """A diffusers pipeline from ``ref``, placed on its device as ``options`` say."""
    import diffusers

    _quiet_loading()
    log = log or (lambda message: None)
    if ref.library not in (None, "diffusers"):
        raise InputError(f"{stage} model '{ref.id}' is a {ref.library} model ({ref.class_name}), not a diffusers "
                         "pipeline (no model_index.json)")
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    try:
        pipe = diffusers.DiffusionPipeline.from_pretrained(ref.source, dtype=dtype, **_hub_kwargs(ref, options))
    except (OSError, ValueError, TypeError, ImportError, AttributeError, RuntimeError) as exc:
        raise _loading_failed(ref, stage, exc) from exc
    place_pipeline(pipe, device, options, log)
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    return pipe


def place_pipeline(pipe, device: torch.device, options: LoadOptions, log: Log) -> None:
    if options.offload != "none" and device.type != "cuda":
        log(f"--offload {options.offload} needs a CUDA GPU; running on {device} without offload")
    if options.offload == "model" and device.type == "cuda":
        pipe.enable_model_cpu_offload(device=device)
    elif options.offload == "sequential" and device.type == "cuda":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
    if options.attention_slicing:
        if hasattr(pipe, "enable_attention_slicing"):
            pipe.enable_attention_slicing()
        else:
            log(f"{type(pipe).__name__} has no attention slicing; --attention-slicing ignored")
    if options.vae_tiling:
        vae = getattr(pipe, "vae", None)
        if vae is not None and hasattr(vae, "enable_tiling"):
            vae.enable_tiling()
        else:
            log(f"{type(pipe).__name__} has no VAE tiling; --vae-tiling ignored")


def load_transformers(ref: ModelRef, options: LoadOptions, stage: str, auto_model: str):
    """``(processor, model)`` of a transformers model: ``AutoImageProcessor`` and ``transformers.<auto_model>``."""
    import transformers

    if ref.library not in (None, "transformers"):
        raise InputError(f"{stage} model '{ref.id}' is a {ref.library} model ({ref.class_name}), not a "
                         "transformers model")
    _quiet_loading()
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    kwargs = _hub_kwargs(ref, options)
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(ref.source, **kwargs)
        model = getattr(transformers, auto_model).from_pretrained(ref.source, dtype=dtype, **kwargs)
    except (OSError, ValueError, TypeError, ImportError, KeyError, RuntimeError) as exc:
        raise _loading_failed(ref, stage, exc) from exc
    return processor, model.to(device).eval()


# ------------------------------------------------------------------------------------------------ caching

#: stage -> (key, loaded model): one model per stage stays loaded between jobs.
_CACHE: dict[str, tuple[tuple, object]] = {}


def cached(stage: str, key: tuple, load: Callable[[], object]) -> object:
    """The model cached for ``stage`` when it was loaded with ``key``; otherwise drop it and ``load()``."""
    entry = _CACHE.get(stage)
    if entry is not None and entry[0] == key:
        return entry[1]
    if entry is not None:
        del _CACHE[stage]
        del entry
        _free_memory()
    model = load()
    _CACHE[stage] = (key, model)
    return model


def loaded() -> dict[str, str]:
    """stage -> model id of what is loaded now."""
    return {stage: str(key[0]) for stage, (key, _) in _CACHE.items()}


def release() -> list[str]:
    """Drop every cached model and give GPU memory back to the driver; returns the stages that were loaded."""
    stages = sorted(_CACHE)
    _CACHE.clear()
    _free_memory()
    return stages


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------- provenance


def versions() -> dict[str, str | None]:
    """Versions of the model libraries, for ``shot.json``."""
    import importlib.metadata as md

    found = {}
    for name in ("torch", "diffusers", "transformers", "accelerate", "huggingface_hub", "safetensors"):
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            found[name] = None
    return found


def folder_fingerprint(folder: str) -> str:
    """A short hash of a model folder: every file's path and size, and the text of its JSON configs (cheap
    enough for a folder of many GB; a retrained checkpoint of the same size still differs in its configs or
    is caught by the size of any file that changed)."""
    digest = hashlib.sha1()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = os.path.join(dirpath, name)
            digest.update(f"{os.path.relpath(path, folder)}:{os.path.getsize(path)};".encode())
            if name.endswith(".json"):
                with open(path, "rb") as f:
                    digest.update(f.read())
    return digest.hexdigest()[:16]


def provenance(ref: ModelRef, model, options: LoadOptions) -> dict:
    """What ``shot.json`` records about a loaded model: enough to load the same one again."""
    config = getattr(model, "config", None)
    name_or_path = getattr(model, "name_or_path", None) or (
        config.get("_name_or_path") if isinstance(config, dict) else getattr(config, "_name_or_path", None))
    commit = getattr(config, "_commit_hash", None) if config is not None and not isinstance(config, dict) else None
    ref = refresh(ref)
    device = resolve_device(options.device)
    return {
        "id": os.path.abspath(ref.id) if os.path.isdir(ref.id) else ref.id,
        "folder": ref.folder,
        "revision": ref.revision or commit,
        "folder_fingerprint": folder_fingerprint(ref.folder) if ref.folder and os.path.isdir(ref.id) else None,
        "library": ref.library,
        "class": type(model).__name__,
        "name_or_path": str(name_or_path) if name_or_path else None,
        "device": str(device),
        "dtype": str(resolve_dtype(options.dtype, device)).replace("torch.", ""),
        "offload": options.offload,
    }


def model_options(spec) -> LoadOptions:
    """The model placement options of a ConvertSpec (or GenerateSpec)."""
    return LoadOptions(device=spec.device, dtype=spec.model_dtype, offload=spec.model_offload,
                       attention_slicing=spec.attention_slicing, vae_tiling=spec.vae_tiling,
                       trust_remote_code=spec.trust_remote_code)
