"""What crosses between Python and the widgets' JavaScript: message types and binary arrays.

``MESSAGE_TYPES`` is the one table of custom-message ``type`` values; ``js/protocol.js`` mirrors it
(a test keeps the two equal). Requests that expect an answer carry a ``request_id``; the answer
echoes it, and a failure answers with ``{"type": "error", "request_id": ..., "message": ...}``.

Arrays travel as ``{"view": <buffer>, "dtype": "float32", "shape": [n, 3]}``: the buffer goes as a
binary frame of the comm message, never as a JSON list. The browser side wraps each array in a
``DataView``: Jupyter's widget managers (JupyterLab, Notebook 7, Voila, VS Code, Colab) take any
``ArrayBuffer`` view as a binary frame, marimo's only a ``DataView``. A typed array that reaches Python
as JSON anyway (``{"0": v0, "1": v1, ...}``) is still read (:func:`view_bytes`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: type -> (direction, meaning). "in": JavaScript -> Python, "out": Python -> JavaScript.
MESSAGE_TYPES: dict[str, tuple[str, str]] = {
    "submit": ("in", "prompt box: run the query {text, limit, mode}"),
    "thumbnails": ("in/out", "request {request_id, indices} / answer {request_id, indices, ids, names, fields?}"
                             " + buffers (fields: [[name, text], ...] per index; an empty buffer: no picture)"),
    "detail": ("in/out", "request {request_id, index} / answer {request_id, id, path, meta} + one image buffer"),
    "find_similar": ("in", "gallery: search for images similar to the selection"),
    "add_to_collection": ("in", "gallery: add the selection to {name}"),
    "remove_from_collection": ("in", "gallery: remove the selection from {name}"),
    "sample": ("in", "sampler: draw {method, n_clusters, size, seed}"),
    "pick": ("in", "explorer: a point was clicked {index}"),
    "compute_umap": ("in", "explorer: start the UMAP projection"),
    "select_category": ("in", "explorer: select every point of legend entry {index}"),
    "save_collection": ("in", "collections: save the current view as {name}"),
    "show_collection": ("in", "collections: show collection {name} in the gallery"),
    "delete_collection": ("in", "collections: delete {name}"),
    "export": ("in", "collections / explorer: put the current view / the selection into a DataFrame (widget.exported)"),
    "add_filter": ("in", "filters: add {filter} (a picsift.query.filters.to_dict dict)"),
    "remove_filter": ("in", "filters: remove the filter at {index}"),
    "refresh_choices": ("in", "filters: reload the pickers' options from the labelled data"),
    "copy_images": ("in", "actions: copy the target images into {dataset}"),
    "move_images": ("in", "actions: move the target images into {dataset}"),
    "delete_images": ("in", "actions: delete the target images' files {confirmed: true, count}"),
    "create_job": ("in", "actions: create labelling job {name} with the target images"),
    "export_images": ("in", "actions: export the target images {format, path}"),
    "coordinates": ("in/out", "explorer: request {request_id, indices} / answer {request_id, indices} + one"
                              " float32 buffer of those points' exact coordinates (a big map, zoomed in)"),
    "fit": ("out", "explorer: fit the view to {bounds: [[min...], [max...]]} (null: every point)"),
    "error": ("out", "a readable error {message, request_id?}"),
    "notice": ("out", "a transient message {message}"),
    "run_health": ("in", "health: run the checks {field, split} ('': none)"),
    "show_finding": ("in", "health: show finding {name} in the gallery"),
    "accept_suggestion": ("in", "health: set the field's tag to the suggested class on the target images"),
    "open_issue": ("in", "health: open an issue on each target image, saying what was found"),
    "add_to_job": ("in", "health: add the target images to labelling job {job}"),
    "export_finding": ("in", "health: export the target images of the shown finding to {path}"),
}

ARRAY_DTYPES = ("float32", "float64", "int32", "uint32", "uint8", "int8", "uint16", "int16")


def array_to_json(value: np.ndarray | None, _widget: Any = None) -> dict[str, Any] | None:
    """Serialise an array trait as ``{view, dtype, shape}`` (the view becomes a binary buffer)."""
    if value is None:
        return None
    array = np.ascontiguousarray(value)
    if array.dtype == np.float16 or array.dtype.name not in ARRAY_DTYPES:
        raise TypeError(f"cannot send dtype {array.dtype} to JavaScript; valid dtypes: {', '.join(ARRAY_DTYPES)}")
    return {"view": array.reshape(-1).view(np.uint8).data, "dtype": array.dtype.name,
            "shape": list(array.shape)}


def array_from_json(value: dict[str, Any] | None, _widget: Any = None) -> np.ndarray | None:
    """The inverse of :func:`array_to_json` (what JavaScript sends back)."""
    if value is None:
        return None
    dtype = value.get("dtype", "float32")
    if dtype not in ARRAY_DTYPES:
        raise TypeError(f"unknown dtype {dtype!r} from JavaScript; valid dtypes: {', '.join(ARRAY_DTYPES)}")
    array = np.frombuffer(view_bytes(value), dtype=dtype)
    shape = value.get("shape")
    return array.reshape(shape) if shape else array


def view_bytes(value: dict[str, Any]) -> bytes:
    """The bytes of an array's ``view``: a binary buffer, or a typed array that a widget manager sent as JSON
    (an object of index -> element, elements of ``value["dtype"]``)."""
    view = value["view"]
    if isinstance(view, dict):
        dtype = value.get("dtype", "float32")
        if dtype not in ARRAY_DTYPES:
            raise TypeError(f"unknown dtype {dtype!r} from JavaScript; valid dtypes: {', '.join(ARRAY_DTYPES)}")
        return np.asarray([view[str(i)] for i in range(len(view))], dtype=dtype).tobytes()
    if isinstance(view, str | list):
        raise TypeError(f"an array's view arrived as {type(view).__name__}, not as a binary buffer")
    return bytes(view)


ARRAY_SERIALIZERS = {"to_json": array_to_json, "from_json": array_from_json}


def check_message(content: Any) -> str:
    """The ``type`` of an incoming message, or ValueError naming the valid ones."""
    if not isinstance(content, dict) or "type" not in content:
        raise ValueError(f"message without a type: {content!r}")
    kind = content["type"]
    if kind not in MESSAGE_TYPES:
        raise ValueError(f"unknown message type {kind!r}; valid types: {', '.join(MESSAGE_TYPES)}")
    return str(kind)
