"""Hugging Face Space entry point: `python app.py`."""

from qasr_space.server import main

if __name__ == "__main__":
    main()
