"""Graph data for REFINE with graph residual encoders: full-batch or exact k-hop subgraph minibatches.

Knows nothing of AnnData: an adjacency matrix (scipy sparse, row ``i`` lists the neighbours of node
``i``) plus row-aligned node tensors.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["GraphBatches", "edge_index_from_adjacency", "k_hop_nodes", "locality_order"]


def edge_index_from_adjacency(adjacency: sp.spmatrix) -> torch.Tensor:
    """``(2, E)`` edge index in torch-geometric's source -> target convention: ``A[i, j] != 0`` means
    ``j`` sends a message to ``i``. Explicit zeros are dropped; weights are ignored."""
    coo = sp.coo_matrix(adjacency)
    keep = coo.data != 0
    return torch.from_numpy(np.vstack([coo.col[keep], coo.row[keep]]).astype(np.int64))


def k_hop_nodes(adjacency: sp.csr_matrix, seeds: np.ndarray, n_hops: int) -> np.ndarray:
    """Sorted node ids within ``n_hops`` of ``seeds`` (seeds included), by frontier expansion."""
    nodes = np.unique(seeds)
    frontier = nodes
    for _ in range(n_hops):
        if len(frontier) == 0:
            break
        neighbours = np.unique(adjacency[frontier].indices)
        frontier = np.setdiff1d(neighbours, nodes, assume_unique=True)
        nodes = np.union1d(nodes, frontier)
    return nodes


def locality_order(adjacency: sp.csr_matrix) -> np.ndarray:
    """A node order in which graph neighbours sit close (reverse Cuthill-McKee): consecutive seeds then
    share most of their k-hop neighbourhoods, which keeps minibatch subgraphs small."""
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    symmetric = (adjacency + adjacency.T).tocsr()
    return np.asarray(reverse_cuthill_mckee(symmetric, symmetric_mode=True), dtype=np.int64)


class GraphBatches:
    """Batches over a graph whose loss (or output) counts on ``seeds`` only.

    With ``batch_size=None`` every batch is the graph with a ``mask`` on the seeds: the whole graph, or,
    when the seeds are few, the subgraph induced by their ``n_hops + 1``-hop neighbourhood (the extra hop
    keeps GCN's degree normalisation exact), which gives the seeds the same outputs at a fraction of the
    cost (100 labelled cells of a 20,000-cell slice train on a few thousand nodes). Otherwise the
    seeds are taken in locality order, cut into chunks of ``batch_size``, and each chunk comes with its
    exact ``n_hops``-hop neighbourhood: for GraphSAGE and GAT layers the seeds' outputs are then the same
    as in the full graph, at a memory cost bounded by the batch, not by the graph. Training shuffles the
    order of the chunks each epoch.

    Parameters
    ----------
    adjacency
        (n, n) sparse adjacency; row ``i`` holds the neighbours of ``i``.
    tensors
        Row-aligned node tensors (``x``, ``features``, ``y``); ``None`` values are dropped.
    seeds
        Node ids whose outputs count (e.g. the labelled training cells).
    n_hops
        Message-passing depth of the encoder (size of the halo in minibatches).
    batch_size
        Seeds per batch, or ``None`` for full-batch.
    shuffle
        Shuffle chunk order each epoch (training).
    """

    def __init__(
        self,
        adjacency: sp.spmatrix,
        tensors: Mapping[str, torch.Tensor | None],
        seeds: np.ndarray,
        *,
        n_hops: int,
        batch_size: int | None = None,
        shuffle: bool = False,
        order: np.ndarray | None = None,
    ) -> None:
        self.adjacency = sp.csr_matrix(adjacency)
        n = self.adjacency.shape[0]
        if self.adjacency.shape != (n, n):
            raise ValueError(f"The adjacency must be square, got shape {self.adjacency.shape}.")
        self.tensors = {k: v for k, v in tensors.items() if v is not None}
        if any(len(v) != n for v in self.tensors.values()):
            raise ValueError("Node tensors must have one row per node of the graph.")
        self.seeds = np.sort(np.asarray(seeds, dtype=np.int64))
        if len(self.seeds) == 0:
            raise ValueError("GraphBatches needs at least one seed node.")
        self.n_hops = n_hops
        self.batch_size = batch_size
        self.shuffle = shuffle
        self._order = order
        self._full_batch: dict | None = None
        self._device = torch.device("cpu")

    @property
    def n_batches(self) -> int:
        return 1 if self.batch_size is None else -(-len(self.seeds) // self.batch_size)

    def to(self, device: torch.device) -> GraphBatches:
        moved = GraphBatches(
            self.adjacency,
            {k: v.to(device) for k, v in self.tensors.items()},
            self.seeds,
            n_hops=self.n_hops,
            batch_size=self.batch_size,
            shuffle=self.shuffle,
            order=self._order,
        )
        moved._device = torch.device(device)
        return moved

    def _chunks(self) -> list[np.ndarray]:
        if self._order is None:
            self._order = locality_order(self.adjacency)
        rank = np.empty(len(self._order), dtype=np.int64)
        rank[self._order] = np.arange(len(self._order))
        ordered = self.seeds[np.argsort(rank[self.seeds], kind="stable")]
        return [np.sort(ordered[i : i + self.batch_size]) for i in range(0, len(ordered), self.batch_size)]

    def batches(self, generator: torch.Generator | None = None) -> Iterator[dict]:
        if self.batch_size is None:
            if self._full_batch is None:
                self._full_batch = self._seed_neighbourhood()
            yield self._full_batch
            return
        chunks = self._chunks()
        if self.shuffle:
            chunks = [chunks[i] for i in torch.randperm(len(chunks), generator=generator).tolist()]
        for chunk in chunks:
            nodes = k_hop_nodes(self.adjacency, chunk, self.n_hops)
            sub = self.adjacency[nodes][:, nodes]
            index = torch.from_numpy(nodes).to(self._device)
            mask = torch.from_numpy(np.isin(nodes, chunk, assume_unique=True)).to(self._device)
            yield {
                **{k: v[index] for k, v in self.tensors.items()},
                "edge_index": edge_index_from_adjacency(sub).to(self._device),
                "mask": mask,
            }

    def _seed_neighbourhood(self) -> dict:
        """The full batch: the subgraph within ``n_hops + 1`` of the seeds if it is smaller than the graph."""
        n = self.adjacency.shape[0]
        nodes = k_hop_nodes(self.adjacency, self.seeds, self.n_hops + 1) if len(self.seeds) < n else None
        if nodes is None or len(nodes) > 0.8 * n:  # most of the graph: not worth a copy
            nodes, adjacency, tensors = np.arange(n), self.adjacency, self.tensors
        else:
            index = torch.from_numpy(nodes).to(self._device)
            adjacency, tensors = self.adjacency[nodes][:, nodes], {k: v[index] for k, v in self.tensors.items()}
        mask = torch.from_numpy(np.isin(nodes, self.seeds, assume_unique=True)).to(self._device)
        return {**tensors, "edge_index": edge_index_from_adjacency(adjacency).to(self._device), "mask": mask}

    def predict_order(self) -> np.ndarray:
        """The node order in which :func:`~spatial_refine.refine.predict_outputs` returns seed outputs."""
        if self.batch_size is None:
            return self.seeds
        return np.concatenate(self._chunks())
