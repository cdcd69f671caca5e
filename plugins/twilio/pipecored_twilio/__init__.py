"""pipecored's built-in twilio provider plugin."""
