"""Tools around the engine that users run by hand (``iopv import-holdings``): they produce inputs
such as basket files and are never imported by the service."""
