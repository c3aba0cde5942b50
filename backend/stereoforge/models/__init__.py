"""Models that drop in: video generation, depth estimation and inpainting, each chosen by a Hugging Face id or a
local folder and loaded through its own library (diffusers, transformers).

* :mod:`.loading`: finding a model (folder, cache, hub), loading it with device, dtype and memory options,
  keeping it cached between jobs, and what ``shot.json`` records about it.
* :mod:`.video`: diffusers text-to-video and image-to-video pipelines.
* :mod:`.depth`: transformers depth-estimation models and diffusers Marigold, into the shot folder.
* :mod:`.inpaint`: diffusers inpainting pipelines, in chunks of frames and tiles.
* :mod:`.registry`: what is available on this machine, by stage (``stereoforge models``).

Importing this package imports neither torch nor the model libraries; the modules above do.
"""
