"""pipecored's built-in resend provider plugin."""
