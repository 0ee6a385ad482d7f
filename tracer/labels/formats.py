"""The label file formats `tracer labels import --format` and the API's label imports accept.

Its own module so the CLI's parser lists them without importing the parsers behind them.
"""

FORMATS = ("auto", "sdn-xml", "sdn-advanced", "ofac-json", "ofac-flat", "ofac-asset-list", "tagpack", "csv")
