# SPDX-License-Identifier: GPL-3.0-or-later
"""Open a flowgraph in GNU Radio Companion's own window and canvas (needs an X display: run it under
xvfb-run), then write a scaled PNG of the canvas and/or report blocks that overlap on it.

    xvfb-run -a ./dev.sh env python scripts/grc_render.py examples/file_loopback.grc \
        --png docs/grc_file_loopback.png --scale 0.6
    xvfb-run -a ./dev.sh env python scripts/grc_render.py examples/*.grc --check-overlaps

The PNG is drawn by GRC's own drawing code (what File > Screen Capture writes), scaled down.
Exit status 1 when --check-overlaps finds overlapping blocks (one line per pair)."""
import argparse
import json
import sys
from pathlib import Path

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("PangoCairo", "1.0")
import cairo  # noqa: E402
from gi.repository import GLib, Gtk  # noqa: E402


def block_boxes(flow_graph):
    """(name, (x0, y0, x1, y1)) of every enabled block as drawn, ports and comment included."""
    boxes = []
    for block in flow_graph.blocks:
        if not block.enabled:
            continue
        x0, y0, x1, y1 = block.get_extents()
        cx0, cy0, cx1, cy1 = block.get_extents_comment()
        boxes.append((block.name, (min(x0, cx0), min(y0, cy0), max(x1, cx1), max(y1, cy1))))
    return boxes


def overlaps(boxes):
    found = []
    for i, (name_a, a) in enumerate(boxes):
        for name_b, b in boxes[i + 1:]:
            if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                found.append((name_a, name_b))
    return found


def write_png(flow_graph, path, scale):
    from gnuradio.grc.gui import Constants
    from gnuradio.grc.gui.canvas.colors import FLOWGRAPH_BACKGROUND_COLOR

    x0, y0, x1, y1 = flow_graph.get_extents()
    pad = Constants.CANVAS_GRID_SIZE
    width, height = x1 - x0 + 2 * pad, y1 - y0 + 2 * pad
    surface = cairo.ImageSurface(cairo.FORMAT_RGB24, round(width * scale), round(height * scale))
    cr = cairo.Context(surface)
    cr.set_source_rgba(*FLOWGRAPH_BACKGROUND_COLOR)
    cr.paint()
    cr.scale(scale, scale)
    cr.translate(pad - x0, pad - y0)
    flow_graph.create_labels(cr)
    flow_graph.create_shapes()
    flow_graph.draw(cr)
    surface.write_to_png(str(path))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("flow_graphs", nargs="+", type=Path)
    parser.add_argument("--png", type=Path, help="write the first flowgraph's canvas here")
    parser.add_argument("--scale", type=float, default=0.6, help="PNG scale (default 0.6)")
    parser.add_argument("--check-overlaps", action="store_true")
    args = parser.parse_args(argv)
    for path in args.flow_graphs:
        if not path.is_file():
            parser.error(f"no such flowgraph: {path}")

    from gnuradio import gr
    from gnuradio.grc.gui.Platform import Platform  # before Application, as GRC's main does
    from gnuradio.grc.gui.Application import Application  # noqa: I100

    platform = Platform(version=gr.version(),
                        version_parts=(gr.major_version(), gr.api_version(), gr.minor_version()),
                        prefs=gr.prefs(), install_prefix=gr.prefix())
    platform.build_library()
    files = [str(p.resolve()) for p in args.flow_graphs]
    app = Application(files, platform)
    result = {"status": 0}

    def when_loaded():
        pages = {page.file_path: page for page in app.main_window.get_pages()}
        if not all(f in pages for f in files):
            return True  # GRC opens the files from its activate handler; ask again when idle
        try:
            for f in files:
                flow_graph = pages[f].flow_graph
                flow_graph.update_elements_to_draw()  # GRC does this when a page is first drawn
                flow_graph.create_labels()
                flow_graph.create_shapes()
                if args.check_overlaps:
                    for a, b in overlaps(block_boxes(flow_graph)):
                        print(f"{Path(f).name}: {a} overlaps {b}")
                        result["status"] = 1
                if args.png and f == files[0]:
                    write_png(flow_graph, args.png, args.scale)
                    print(json.dumps({"png": str(args.png), "bytes": args.png.stat().st_size}))
        except Exception as error:  # report, and still leave GRC's main loop
            print(f"grc_render: {type(error).__name__}: {error}", file=sys.stderr)
            result["status"] = 2
        app.quit()
        return False

    GLib.idle_add(when_loaded)
    app.run([])
    return result["status"]


if __name__ == "__main__":
    sys.exit(main())
