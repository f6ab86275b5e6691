"""Site-trained infarct classifier: clinical variables and LGE image features (issue 15)."""
