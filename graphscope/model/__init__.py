"""The captured model: frozen, plain records that know nothing of torch or Graphviz.

`records` holds the node and edge records, `snapshot` one captured graph, `run` a whole run
with what the script did and what the doctor found. Everything else in graphscope is built
on these; they are all importable from here.
"""

from graphscope.model.records import (JSON_FORMAT_VERSION, Edge, GradStat, Node, NodeKind, accumulated, base_name,
                                      compact_json)
from graphscope.model.run import (SEVERITIES, Failure, Finding, GraphBreak, IdleParameter, OptimizerRecord, Run,
                                  ScalerStep, Warned)
from graphscope.model.snapshot import Snapshot, from_node_link, node_link_graph, to_node_link

__all__ = ["JSON_FORMAT_VERSION", "SEVERITIES", "Edge", "Failure", "Finding", "GradStat", "GraphBreak", "IdleParameter",
           "Node", "NodeKind", "OptimizerRecord", "Run", "ScalerStep", "Snapshot", "Warned", "accumulated", "base_name",
           "compact_json", "from_node_link",
           "node_link_graph", "to_node_link"]
