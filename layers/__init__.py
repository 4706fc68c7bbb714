"""layers: locally connected filtering, L2 pooling and local contrast normalisation,
partitioned by output location across ranks, written against the distarray API only.

The layers themselves arrive with the layers issue; this package holds their place in the
dependency order models -> layers -> distarray.
"""
