"""What is built on the client: the command line, the import, its journal, the demo.

Imports the client and the faces, never the reverse.
"""
