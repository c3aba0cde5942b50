"""StereoForge backend: mono frames and depth in, stereo eyes, masks, composites and video out.

The package never imports ``bpy``; the Blender add-on lives in ``addon/`` and talks to this package
through the command line or the job server.
"""

__version__ = "0.1.0"
