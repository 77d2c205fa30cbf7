"""Where the officer is, and which cameras can see them."""
