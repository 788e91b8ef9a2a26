"""The one error type raised by the dataset loaders."""


class DatasetError(ValueError):
    """A dataset file is missing, damaged or not in the expected format.

    Subclasses ``ValueError`` so callers that already catch bad input keep working.
    Every message names the file (or the places searched) and says what was wrong.
    """
