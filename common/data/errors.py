"""One exception type for every problem with input data.

Scripts catch `DataError` at the top and print its message as one line, so a
user sees what is wrong with their files instead of a traceback.
"""


class DataError(Exception):
    pass
