"""Analysis of the embeddings: diverse sampling, maps (PCA/UMAP), neighbours and outliers, active learning."""
