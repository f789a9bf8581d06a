"""Models of the model half: tiny random models made on the fly (``tiny``) and which Hub model a
base model is (``identity``)."""
