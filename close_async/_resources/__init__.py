"""The resources: what is sent and how the answer is read, over a transport's ``send()``.

A resource imports the transport (never the client), and never another resource's folder.
"""
