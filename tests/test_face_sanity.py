"""bench/face_sanity.py: the degradations the face-metric sanity bench scores, checked pixel by pixel."""


import numpy as np

from bench.face_sanity import patch_shuffled, pixelated


def test_degradations_of_the_sanity_bench():
    images = np.random.default_rng(1).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    blocky = pixelated(images, 8)
    assert np.array_equal(blocky, np.repeat(np.repeat(blocky[:, ::8, ::8], 8, axis=1), 8, axis=2))
    assert abs(blocky[0, :8, :8].astype(float).mean() - images[0, :8, :8].astype(float).mean()) < 1
    shuffled = patch_shuffled(images)
    assert not np.array_equal(shuffled, images)
    for original, moved in zip(images, shuffled, strict=True):  # the same 16 patches, in another order
        patches = {original[r:r + 16, c:c + 16].tobytes() for r in range(0, 64, 16) for c in range(0, 64, 16)}
        assert patches == {moved[r:r + 16, c:c + 16].tobytes() for r in range(0, 64, 16) for c in range(0, 64, 16)}
