"""One router per noun; each route validates its input, calls one domain function, returns a schema."""
