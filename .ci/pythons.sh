# Sourced by .ci/run (and by tests/test_ci.py): find one interpreter per supported Python.
#
# Interpreters come from pyenv's versions directory (`pyenv root`, or $PYENV_ROOT where the
# pyenv command is absent), never from PATH or PYENV_VERSION: inside an active venv both
# resolve to the venv's own python, which is how an earlier .ci/run "found" no 3.13 and
# skipped it.  A supported version that is not there is a failure, never a skip.

SUPPORTED_PYTHONS="3.10 3.11 3.12 3.13"

ci_pyenv_root() {
    if command -v pyenv >/dev/null 2>&1; then
        pyenv root
    elif [ -n "${PYENV_ROOT:-}" ]; then
        echo "$PYENV_ROOT"
    else
        return 1
    fi
}

# ci_python X.Y: print the path of the newest X.Y.Z that pyenv holds (release builds only:
# no -dev, no free-threaded "t"), or fail naming X.Y.
ci_python() {
    local minor=$1 root dir name found=""
    if ! root=$(ci_pyenv_root); then
        echo "FAIL: pyenv is not installed, so Python $minor cannot be found" >&2
        return 1
    fi
    while IFS= read -r dir; do
        name=${dir##*/}
        [[ $name =~ ^${minor//./\\.}\.[0-9]+$ ]] || continue
        [ -x "$dir/bin/python$minor" ] && found="$dir/bin/python$minor"
    done < <(find "$root/versions" -mindepth 1 -maxdepth 1 -name "$minor.*" 2>/dev/null | sort -V)
    if [ -z "$found" ]; then
        echo "FAIL: Python $minor is not installed under $root/versions (pyenv install $minor)" >&2
        return 1
    fi
    if ! "$found" -c "import sys; sys.exit('%d.%d' % sys.version_info[:2] != '$minor')"; then
        echo "FAIL: $found is not Python $minor" >&2
        return 1
    fi
    echo "$found"
}
