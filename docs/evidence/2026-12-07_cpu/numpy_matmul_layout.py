"""Does numpy's matmul (the Triton interpreter's tl.dot) give the same float32 bits for a
contiguous second operand and a transposed view of the same values? Prints, for three
shapes, how many elements differ and each form's largest error against float64."""
import numpy as np

r = np.random.default_rng(0)
for m, k, n in [(8, 32, 64), (16, 32, 64), (32, 32, 64)]:
    a = r.standard_normal((m, k)).astype(np.float32)
    b = r.standard_normal((k, n)).astype(np.float32)
    bt = np.ascontiguousarray(b.T).T  # the same values, a transposed view
    x = np.matmul(a, b, dtype=np.float32)
    y = np.matmul(a, bt, dtype=np.float32)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    print(f"{m} x {k} x {n}: {(x != y).sum()} of {x.size} differ; "
          f"max error contiguous {np.abs(x - ref).max():.2e}, view {np.abs(y - ref).max():.2e}")
