"""The SDK's version, written only here: ``sqlfs.__version__``, the User-Agent header and the
package metadata (``pyproject.toml`` reads it as a dynamic version) all take it from this line."""

__version__ = "0.3.0"
