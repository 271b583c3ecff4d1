"""Stage 4: features of a decoded image (hashes now; keypoints where geometry needs them)."""
