"""The exported model: the SavedModel with the tf.Transform layer (`saved_model`), its versions in
a serving folder and the push (`store`), requests built from typed rows (`requests`) and scoring it
in this process (`scoring`).
"""
