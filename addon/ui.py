"""The sidebar panel (3D viewport > N > StereoForge) and the progress in the status bar."""

from __future__ import annotations

import bpy

from . import operators


def _progress(layout, state) -> None:
    """The running job's progress bar, step and frame, and its Cancel button."""
    text = f"{state.step_index}/{state.step_count} {state.stage}"
    if state.total:
        text += f" {state.done}/{state.total}"
    row = layout.row(align=True)
    row.progress(factor=state.factor, type="BAR", text=text)
    row.operator("stereoforge.cancel", text="", icon="CANCEL")


def _model_field(layout, context, settings, prop: str, kind: str) -> None:
    """A model field that offers the backend's models of ``kind`` (after Refresh) and takes any typed id."""
    models = context.window_manager.stereoforge_models
    row = layout.row(align=True)
    row.prop_search(settings, prop, models, kind)
    row.operator("stereoforge.refresh_models", text="", icon="FILE_REFRESH")


def _generation(layout, s) -> None:
    """The video model's settings (0 leaves one to the model) and the seed with its dice."""
    col = layout.column(align=True)
    col.prop(s, "num_frames")
    col.prop(s, "width")
    col.prop(s, "height")
    col = layout.column(align=True)
    col.prop(s, "steps")
    col.prop(s, "guidance")
    row = layout.row(align=True)
    row.prop(s, "seed")
    row.operator("stereoforge.new_seed", text="", icon="FILE_REFRESH")
    layout.prop(s, "take")


class _Panel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "StereoForge"


class STEREOFORGE_PT_main(_Panel, bpy.types.Panel):
    bl_label = "StereoForge"

    def draw(self, context):
        layout = self.layout
        state = context.window_manager.stereoforge_job
        if state.running:
            _progress(layout, state)
        else:
            layout.operator("stereoforge.run", icon="PLAY")
        if state.message and not state.running:
            box = layout.box()
            box.label(text=state.message, icon="INFO")
            if state.video:
                box.operator("stereoforge.load_result", icon="FILE_MOVIE")


class STEREOFORGE_PT_source(_Panel, bpy.types.Panel):
    bl_label = "Source"
    bl_parent_id = "STEREOFORGE_PT_main"

    def draw(self, context):
        s = context.scene.stereoforge
        layout = self.layout
        layout.use_property_split = True
        layout.prop(s, "source")
        if s.source == "PROMPT":
            layout.prop(s, "prompt")
            layout.prop(s, "negative_prompt")
            _model_field(layout, context, s, "video_model", "video")
            _generation(layout, s)
        elif s.source == "SCENE":
            layout.prop(s, "source_camera")
        else:
            layout.prop(s, "source_path")
            if s.source == "IMAGE":
                _model_field(layout, context, s, "video_model", "image_video")
                if s.video_model.strip():
                    layout.prop(s, "prompt")
                    _generation(layout, s)
        _draw_source_settings(layout, s)
        layout.operator("stereoforge.load", icon="IMPORT")


class STEREOFORGE_PT_depth(_Panel, bpy.types.Panel):
    bl_label = "Depth"
    bl_parent_id = "STEREOFORGE_PT_main"

    def draw(self, context):
        s = context.scene.stereoforge
        layout = self.layout
        layout.use_property_split = True
        if s.source == "SCENE":
            layout.label(text="From the scene camera's Z pass (metres)")
            return
        layout.prop(s, "depth_path")
        _model_field(layout, context, s, "depth_model", "depth")
        if s.depth_path.strip() and s.depth_model.strip():
            layout.label(text="Depth Path runs; the Depth Model is not used", icon="INFO")
        elif s.depth_model.strip():  # the model knows its kind of depth; relative depth maps to Near..Far
            layout.label(text="The Depth Model estimates the depth", icon="INFO")
            col = layout.column(align=True)
            col.prop(s, "near")
            col.prop(s, "far")
            return
        layout.prop(s, "depth_kind")
        if s.depth_kind == "RELATIVE":
            col = layout.column(align=True)
            col.prop(s, "near")
            col.prop(s, "far")
        elif s.depth_kind == "DISPARITY":
            layout.prop(s, "baseline")
        layout.prop(s, "depth_scale")
        _draw_depth_settings(layout, s)


class STEREOFORGE_PT_rig(_Panel, bpy.types.Panel):
    bl_label = "Stereo Rig"
    bl_parent_id = "STEREOFORGE_PT_main"

    def draw(self, context):
        s = context.scene.stereoforge
        layout = self.layout
        layout.use_property_split = True
        layout.prop(s, "convergence_mode")
        layout.prop(s, "pivot")
        col = layout.column()
        col.active = s.max_parallax == 0
        col.prop(s, "interocular")
        layout.prop(s, "max_parallax")
        row = layout.row()
        row.active = s.convergence_mode != "PARALLEL"
        row.prop(s, "convergence_distance")
        _draw_comfort(layout, s, context.window_manager.stereoforge_job, context.scene.frame_current)
        layout.prop(s, "eye_renderer")
        if s.eye_renderer == "BLENDER":
            layout.prop(s, "samples")
        col = layout.column(align=True)
        col.operator("stereoforge.import_clouds", icon="POINTCLOUD_DATA")
        col.operator("stereoforge.setup_camera", icon="CAMERA_STEREO")
        col.operator("stereoforge.render_eyes", icon="RENDER_ANIMATION")


class STEREOFORGE_PT_inpaint(_Panel, bpy.types.Panel):
    bl_label = "Inpainting"
    bl_parent_id = "STEREOFORGE_PT_main"

    def draw(self, context):
        s = context.scene.stereoforge
        layout = self.layout
        layout.use_property_split = True
        layout.prop(s, "inpaint")
        if s.inpaint == "MODEL":
            _model_field(layout, context, s, "inpaint_model", "inpaint")
            layout.prop(s, "inpaint_prompt")
            layout.prop(s, "inpaint_steps")
            col = layout.column(align=True)
            col.prop(s, "inpaint_chunk")
            col.prop(s, "inpaint_tile")
        layout.operator("stereoforge.inpaint", icon="BRUSH_DATA")


class STEREOFORGE_PT_output(_Panel, bpy.types.Panel):
    bl_label = "Output"
    bl_parent_id = "STEREOFORGE_PT_main"

    def draw(self, context):
        s = context.scene.stereoforge
        layout = self.layout
        layout.use_property_split = True
        layout.prop(s, "output_dir")
        layout.prop(s, "layout")
        layout.prop(s, "codec")
        layout.prop(s, "crf")
        layout.prop(s, "fps")
        layout.prop(s, "device")
        layout.operator("stereoforge.composite", icon="NODE_COMPOSITING")


# -- a stereographer's settings (issue 12) --------------------------------------------------------------------

def _draw_source_settings(layout, s) -> None:
    col = layout.column(align=True)
    col.prop(s, "frame_first")
    col.prop(s, "frame_last")
    if s.source == "SCENE":
        layout.prop(s, "source_engine")
        if s.source_engine == "CYCLES":
            layout.prop(s, "source_samples")
    elif s.source != "PROMPT":
        layout.prop(s, "lens_from_camera")
        col = layout.column(align=True)
        col.active = not s.lens_from_camera
        col.prop(s, "lens")
        col.prop(s, "sensor_width")


def _draw_depth_settings(layout, s) -> None:
    if s.depth_kind in ("RELATIVE", "AFFINE"):
        layout.prop(s, "depth_smoothing")
    layout.prop(s, "depth_edge_radius")


def _draw_comfort(layout, s, state, frame: int) -> None:
    """The far side of the depth budget, the floating window, and the last shot's parallax: its range and the
    current frame's."""
    layout.prop(s, "max_far_parallax")
    layout.prop(s, "screen_width")
    layout.prop(s, "floating_window")
    if state.parallax:
        layout.label(text=state.parallax, icon="INFO")
        here = state.parallax_at(frame)
        if here is not None:
            layout.label(text=f"Frame {frame}: {here[0]:+.2f} % to {here[1]:+.2f} %")


def draw_status(self, context) -> None:
    """Appended to the status bar: the running job's progress, so it shows in every workspace."""
    state = context.window_manager.stereoforge_job
    if state.running and operators.active_job() is not None:
        _progress(self.layout, state)


CLASSES = (STEREOFORGE_PT_main, STEREOFORGE_PT_source, STEREOFORGE_PT_depth, STEREOFORGE_PT_rig,
           STEREOFORGE_PT_inpaint, STEREOFORGE_PT_output)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.STATUSBAR_HT_header.append(draw_status)


def unregister() -> None:
    bpy.types.STATUSBAR_HT_header.remove(draw_status)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
