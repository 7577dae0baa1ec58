"""A Python object that owns one C handle (a builder, quantizer or pruner):
close() frees it once, also at the end of a `with` block and when the object
is collected."""

from . import _lib


class OwnedHandle:
    _FREE = ""  # the C function that frees the handle, e.g. "tinf_builder_free"
    _h = None

    def close(self) -> None:
        if self._h is not None:
            getattr(_lib.lib, self._FREE)(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
