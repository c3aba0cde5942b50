"""Developer tools on top of the library: the benchmarks (``stereoforge bench``), the inpainting scores against
Blender's ground truth (``bench quality``) and the add-on build (``stereoforge addon build``). They read the source
checkout (the add-on, ``tools/``); the library never imports them, the command line only registers them.
"""
