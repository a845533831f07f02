"""Rule 1 of ``docs/merge-rules.md``: nodes that share any id are one work, transitively.

:func:`node_keys` lists each node's keys (``doi:…``, ``pmid:…``, ``pmcid:…``,
``openalex:…``, ``s2:…``, ``oci:…``, ``<source>:<id>``, a record's ``related_dois`` and
a previous row's ``versions`` as ``doi:`` keys, a previous row's ``work_id``);
:class:`IdGraph` is the union-find over them. The groups also know which id *kinds*
they carry, so the fuzzy joiner can refuse to fuse two groups that both have, say, a DOI.
"""
from __future__ import annotations

from collections.abc import Callable

from include.living_review.merge._values import DOI, ID_PREFIXES
from include.living_review.merge.nodes import Nodes


def node_keys(nodes: Nodes) -> list[list[str]]:
    """Every node's id keys, in node order."""
    n, ids, sids, related = nodes.n, nodes.ids, nodes.sids, nodes.related
    prev_versions, prev_ids = nodes.prev_versions, nodes.prev_ids
    out: list[list[str]] = []
    for i in range(len(nodes)):
        keys = [p + v for p, v in zip(ID_PREFIXES, ids[i]) if v]
        keys.extend(f"{s}:{v}" for s, v in sids[i].items())
        if i < n:
            # Another version's DOI links like a shared DOI: that is how a preprint finds its article.
            keys.extend("doi:" + d for d in related[i])
        else:
            own = ids[i][DOI]
            keys.extend("doi:" + vid for vid, _, _ in prev_versions[i - n] if vid != own)
            work_id = prev_ids[i - n]
            if work_id:
                keys.append(work_id)
        out.append(keys)
    return out


class IdGraph:
    """Groups of nodes that share an id key, with union-find for later joins.

    ``groups`` maps each group's root to its member nodes; per root, ``masks`` has one
    bit per id kind present (the text before the key's first ``:``), ``names`` the
    group's smallest key (a stable, input-order-free name) and ``has_record`` whether
    any member is one of this run's records (nodes below ``n_records``).
    """

    def __init__(self, keys: list[list[str]], n_records: int, content_key: Callable[[int], str]) -> None:
        """Join nodes on ``keys`` (one list per node).

        ``content_key(node)`` names groups without any key, which sort after every
        named group, by content.
        """
        self.keys = keys
        self.parent = list(range(len(keys)))
        parent, find = self.parent, self.find
        seen: dict[str, int] = {}
        for i, own_keys in enumerate(keys):
            for key in own_keys:
                other = seen.setdefault(key, i)
                if other != i:
                    ra, rb = find(i), find(other)
                    if ra != rb:
                        parent[rb] = ra
        self.groups: dict[int, list[int]] = {}
        for i in range(len(keys)):
            self.groups.setdefault(find(i), []).append(i)
        # Records that share an id with another record or a previous row.
        self.matched_by_id = sum(len([i for i in m if i < n_records]) for m in self.groups.values() if len(m) > 1)
        self._kind_bits: dict[str, int] = {}
        self.masks: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self.has_record: dict[int, bool] = {}
        for root, members in self.groups.items():
            group_keys = [k for i in members for k in keys[i]]
            self.masks[root] = self._mask(group_keys)
            self.names[root] = min(group_keys) if group_keys else "\x7f" + min(content_key(i) for i in members)
            self.has_record[root] = members[0] < n_records

    @classmethod
    def from_nodes(cls, nodes: Nodes, content_key: Callable[[int], str]) -> IdGraph:
        return cls(node_keys(nodes), nodes.n, content_key)

    def find(self, x: int) -> int:
        """The root of node ``x``'s group."""
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def same_group(self, a: int, b: int) -> bool:
        return self.find(a) == self.find(b)

    def conflict(self, root_a: int, root_b: int) -> bool:
        """Both groups carry an id of the same kind (two DOIs, two Europe PMC ids...)."""
        return bool(self.masks[root_a] & self.masks[root_b])

    def union(self, root_a: int, root_b: int) -> int:
        """Join two groups (by their roots) and return the surviving root, the larger group's."""
        groups = self.groups
        a, b = (root_b, root_a) if len(groups[root_a]) < len(groups[root_b]) else (root_a, root_b)
        self.parent[b] = a
        groups[a].extend(groups.pop(b))
        self.masks[a] |= self.masks[b]
        self.names[a] = min(self.names[a], self.names[b])
        self.has_record[a] = self.has_record[a] or self.has_record[b]
        return a

    def _mask(self, keys: list[str]) -> int:
        mask = 0
        for key in keys:
            kind = key.split(":", 1)[0]
            bit = self._kind_bits.get(kind)
            if bit is None:
                bit = self._kind_bits[kind] = 1 << len(self._kind_bits)
            mask |= bit
        return mask
