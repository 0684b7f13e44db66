"""Other methods of the field run side by side with this project's, on the same data and protocol."""
