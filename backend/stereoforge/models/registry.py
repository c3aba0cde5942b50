"""What models this machine has, by stage: ``stereoforge models`` and the job server's ``GET /models``.

Looks in the Hugging Face cache (``$HF_HOME/hub``, ``~/.cache/huggingface/hub`` by default) and in model folders:
the ones given with ``--dir``, and those listed in ``STEREOFORGE_MODELS`` (separated like ``PATH``). A folder is
a model when it holds ``model_index.json`` (a diffusers pipeline) or ``config.json`` (a transformers model);
a folder of such folders is searched one level deep. Nothing is loaded: the stage is read from the config and
from the pipeline class's ``__call__`` signature.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import asdict, dataclass

STAGES = ("video", "depth", "inpaint")
#: transformers model types of depth models (their architectures end in ``ForDepthEstimation``).
_DEPTH_TYPES = ("depth_anything", "dpt", "zoedepth", "glpn", "depth_pro", "prompt_depth_anything")
#: transformers model types whose output is metric depth in metres; the others' is relative inverse depth.
METRIC_MODEL_TYPES = ("zoedepth", "glpn", "depth_pro", "prompt_depth_anything")


@dataclass
class Available:
    """One model on this machine.

    Attributes:
        stage: ``video``, ``depth`` or ``inpaint``.
        id: what to pass as ``--video-model`` / ``--depth-model`` / ``--inpaint-model``.
        where: ``cache`` or ``folder``.
        path: the folder (for the cache, its newest snapshot).
        class_name: the pipeline or model class.
        detail: ``text-to-video`` / ``image-to-video``; the depth kind (``relative``, ``metric``, ``affine``);
            ``video`` for an inpainter that fills a whole clip under a mask video.
    """

    stage: str
    id: str
    where: str
    path: str
    class_name: str | None
    detail: str | None = None


def _pipeline_params(class_name: str):
    try:
        import diffusers

        cls = getattr(diffusers, class_name)
    except (ImportError, AttributeError):
        return None
    return inspect.signature(cls.__call__).parameters


def takes_video_and_mask(params) -> bool:
    """Whether a pipeline's call parameters make it a video inpainter: a whole clip and its mask video (Wan VACE)."""
    return "video" in params and "mask" in params


def classify(library: str | None, class_name: str | None, config: dict) -> tuple[str, str | None] | None:
    """``(stage, detail)`` of a model from its config, or ``None`` when it is no model of ours."""
    if library == "transformers":
        architectures = " ".join(config.get("architectures") or [])
        model_type = config.get("model_type")
        if "DepthEstimation" in architectures or model_type in _DEPTH_TYPES:
            metric = config.get("depth_estimation_type") == "metric" or model_type in METRIC_MODEL_TYPES
            return "depth", "metric" if metric else "relative"
        return None
    if library != "diffusers" or not class_name:
        return None
    if "Depth" in class_name and "Marigold" in class_name:
        return "depth", "relative" if config.get("prediction_type") == "disparity" else "affine"
    params = _pipeline_params(class_name)
    if params is None:
        return None
    if takes_video_and_mask(params):
        return "inpaint", "video"
    if "mask_image" in params:
        return "inpaint", None
    if "num_frames" in params:
        from .video import needs_image

        return "video", "image-to-video" if needs_image(class_name, params) else "text-to-video"
    return None


def _describe(path: str, model_id: str, where: str) -> Available | None:
    from ..errors import InputError
    from .loading import describe_folder

    try:
        library, class_name, config = describe_folder(path)
    except InputError:  # an unreadable config: not a model we can offer
        return None
    found = classify(library, class_name, config)
    if found is None:
        return None
    return Available(found[0], model_id, where, path, class_name, found[1])


def _cache() -> list[Available]:
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir()
    except Exception:  # no cache yet, or one we cannot read: nothing to list from it
        return []
    found = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        newest = max(repo.revisions, key=lambda r: r.last_modified)
        model = _describe(str(newest.snapshot_path), repo.repo_id, "cache")
        if model is not None:
            found.append(model)
    return found


def folders_from_env() -> list[str]:
    return [p for p in os.environ.get("STEREOFORGE_MODELS", "").split(os.pathsep) if p]


def _folder(folder: str) -> list[Available]:
    if not os.path.isdir(folder):
        return []
    model = _describe(folder, folder, "folder")
    if model is not None:
        return [model]
    found = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not name.startswith("."):
            model = _describe(path, path, "folder")
            if model is not None:
                found.append(model)
    return found


def scan(folders: list[str] | None = None, cache: bool = True) -> list[Available]:
    """Every model available locally: the cache (unless ``cache`` is false), then ``folders`` and
    ``STEREOFORGE_MODELS``."""
    found = _cache() if cache else []
    for folder in [*(folders or []), *folders_from_env()]:
        found.extend(_folder(os.path.abspath(os.path.expanduser(folder))))
    return found


def by_stage(models: list[Available]) -> dict[str, list[dict]]:
    return {stage: [asdict(m) for m in models if m.stage == stage] for stage in STAGES}


def check_available(spec, video_model: str | None = None) -> None:
    """Before any work: every model a job names (``spec``'s depth and inpaint models, and ``video_model``) is on
    this machine or may be downloaded; otherwise the one clear error, instead of a failure hours later."""
    from ..errors import InputError
    from .loading import locate

    for stage, model_id in (("video", video_model), ("depth", spec.depth_model), ("inpaint", spec.inpaint_model)):
        if model_id is None:
            continue
        ref = locate(model_id, stage)
        found = classify(ref.library, ref.class_name, ref.config)
        if found is not None and found[0] != stage:
            named = {"video": "a video", "depth": "a depth", "inpaint": "an inpainting"}
            raise InputError(f"{stage} model '{model_id}' is a {ref.class_name}: {named[found[0]]} model, not "
                             f"{named[stage]} model; `stereoforge models` lists the models here by stage")
