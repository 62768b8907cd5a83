"""Looking at runs: the self-contained HTML report (`python -m tf_cartola.inspect.report`), the
data scientists' feature analysis (`python -m tf_cartola.inspect.analysis`) and the list of pushed
versions (`python -m tf_cartola.inspect.versions`).
"""
