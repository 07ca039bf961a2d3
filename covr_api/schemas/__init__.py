"""Request and response schemas, per entity and per direction (XCreate, XUpdate, XPublic, XsPublic)."""
