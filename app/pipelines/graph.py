"""Graph algorithms on a pipeline's DAG, all through networkx."""

import networkx as nx


def build(nodes, edges) -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from(edges)
    return graph


def from_snapshot(snapshot: dict) -> nx.DiGraph:
    return build((s["name"] for s in snapshot["steps"]), (tuple(e) for e in snapshot["edges"]))


def find_cycle(graph: nx.DiGraph) -> list[str]:
    """The nodes of one cycle in order, or [] when the graph is acyclic."""
    try:
        return [u for u, _v in nx.find_cycle(graph)]
    except nx.NetworkXNoCycle:
        return []


def topological_order(graph: nx.DiGraph) -> list[str]:
    """A stable order: among steps that could go next, the one defined first goes first."""
    position = {node: i for i, node in enumerate(graph.nodes)}
    return list(nx.lexicographical_topological_sort(graph, key=position.__getitem__))


def roots(graph: nx.DiGraph) -> list[str]:
    return [node for node in graph.nodes if graph.in_degree(node) == 0]


def upstream(graph: nx.DiGraph, nodes) -> set[str]:
    """Every step that any of `nodes` depends on, directly or not."""
    result = set()
    for node in nodes:
        result |= nx.ancestors(graph, node)
    return result


def downstream(graph: nx.DiGraph, nodes) -> set[str]:
    """Every step that depends, directly or not, on any of `nodes`."""
    result = set()
    for node in nodes:
        result |= nx.descendants(graph, node)
    return result
