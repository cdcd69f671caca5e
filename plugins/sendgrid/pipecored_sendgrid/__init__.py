"""pipecored's built-in sendgrid provider plugin."""
