"""On-disk formats (spec §10, §11), one module per format, each with its reader, its
writer and errors naming the file and the 1-based line:

- :mod:`~dainet.formats.wider_txt`: WIDER FACE annotation text (``wider_face_*_bbx_gt.txt``);
- :mod:`~dainet.formats.wider_mat`: WIDER FACE ``.mat`` ground truth (``eval_tools/ground_truth``);
- :mod:`~dainet.formats.darkface`: DARK FACE label files (``label/<n>.txt``);
- :mod:`~dainet.formats.lists`: training list files (``<image> <n> x y w h c ...``);
- :mod:`~dainet.formats.predictions`: prediction files of both evaluation protocols;
- :mod:`~dainet.formats.images`: image files (the one decoder, ``IMAGE_SUFFIXES``);
- :mod:`~dainet.formats.text`: the line / number parsing the text formats share.

numpy / scipy / Pillow only: importable without Jittor or OpenCV.
"""
