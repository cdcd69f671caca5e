"""pipecored's built-in meta provider plugin."""
