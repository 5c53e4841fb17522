"""Keys shared across the AnnData layer, in one place (squidpy's and scanpy's defaults where they exist)."""

SPATIAL_KEY = "spatial"  # obsm key of the coordinates
GRAPH_KEY = "spatial_connectivities"  # obsp key written by squidpy.gr.spatial_neighbors
REP_KEY = "X_scGPT"  # obsm key of the frozen scGPT embedding
RESULT_KEY = "refine"  # default key_added of sr.tl.refine / sr.tl.annotate
UNKNOWN = "Unknown"  # label of cells below the confidence threshold
