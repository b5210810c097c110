"""Built-in job types. Importing this package registers them."""
from . import demo, render  # noqa: F401
