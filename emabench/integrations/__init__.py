"""emabench in other frameworks' training loops, each an optional extra: :mod:`.lightning` (``emabench[lightning]``),
a Lightning callback that compares raw and averaged models into a run folder. Nothing is imported here, so the
package is importable without any of those frameworks."""
