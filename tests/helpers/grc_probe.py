# SPDX-License-Identifier: GPL-3.0-or-later
"""Stands in for gnuradio-companion (HQARF_GRC=this file ./dev.sh grc FILE.grc ...): started exactly
as the launch starts GRC, it prints as JSON what F6 would run for each flowgraph, computed by GRC's
own code: the generated file's path (GRC's Generator), the Options block's run command with
{python} = this interpreter (FlowGraph.get_run_command) and the working directory GRC uses."""
import json
import os
import sys
from pathlib import Path

from gnuradio import gr
from gnuradio.grc.core.platform import Platform

platform = Platform(version=gr.version(), version_parts=(gr.major_version(), gr.api_version(),
                    gr.minor_version()), prefs=gr.prefs())
platform.build_library()
runs = []
for path in sys.argv[1:]:
    path = os.path.abspath(path)
    flow_graph = platform.make_flow_graph(path)
    flow_graph.rewrite()
    flow_graph.validate()
    generator = platform.Generator(flow_graph, os.path.dirname(path))  # as GRC's Notebook does
    runs.append({"grc": path, "errors": [str(e) for e in flow_graph.get_error_messages()],
                 "file_path": generator.file_path,
                 "args": flow_graph.get_run_command(generator.file_path, split=True),
                 "cwd": str(Path(generator.file_path).parent)})  # Executor: cwd = its directory
print(json.dumps({"executable": sys.executable, "cwd": os.getcwd(), "env": dict(os.environ),
                  "runs": runs}))
