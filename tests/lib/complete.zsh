# SPDX-License-Identifier: LGPL-2.1-or-later
# usage: zsh -f complete.zsh DIR LINE
#
# Types LINE and a Tab into an interactive zsh, as a person would, and prints the
# candidates the completion offered, one a line. That zsh runs on a pseudo-terminal
# (zsh/zpty), so that ZLE and the completion system are really at work, with compinit and
# the completion functions of DIR first in $fpath. Its compadd is wrapped to write down the
# words each call would add that match what is typed (compadd -O), then add them as usual:
# the terminal's listing is no fit for a test to read. Callers wanting an answer within a
# time limit set one (the test harness does).

zmodload zsh/zpty || exit 1
local dir=$1 line=$2
export ZCOMP_OUT
ZCOMP_OUT=$(mktemp) || exit 1

zpty comp zsh -f -i || exit 1
zpty -w comp "PS1='RE%{%}ADY> ' PS2= RPS1=; fpath=(${(q)dir} \$fpath)"
zpty -w comp 'unsetopt auto_list beep; autoload -Uz compinit; compinit -u -D'
zpty -w comp 'compadd() {
        local -a m
        if (( ${@[(I)-[OAD]*]} )); then builtin compadd "$@"; return; fi
        builtin compadd -O m "$@"
        (( $#m )) && print -rl -- $m >>$ZCOMP_OUT
        builtin compadd "$@"
}'
zpty -w comp 'print ${:-SET}UP'
# Type only once ZLE reads the terminal (it prints the prompt): before, the terminal is in
# cooked mode and its line discipline, not ZLE, would take the Tab and the ^U.
zpty -r comp setup '*SETUP*READY> ' || exit 1
# The line, Tab, then clear the line (^U) and leave: the shell ends after the completion.
zpty -w -n comp "$line"$'\t\x15exit\n'
while zpty -r comp setup; do :; done
zpty -d comp
cat -- $ZCOMP_OUT
rm -f -- $ZCOMP_OUT
