# bash completion for snapshotctl(1)                                 -*- shell-script -*-
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Verbs, the options of each verb, and names: domains from `snapshotctl list-domains --name`,
# snapshots of the domain already on the line from `snapshotctl list DOMAIN --name`, asked
# of the same daemon the command line names (--address=, -H/--host=).
# tests/integration/test_cli.py checks the lists below against `snapshotctl help VERB`.

__snapshotctl_verbs='list-domains create-as create list dumpxml info current revert delete prune abort job parent redefine start stop'

# The options of each verb; --json= only where the verb prints JSON.
declare -A __snapshotctl_verb_options=(
        [list-domains]='--name --json='
        [create-as]='--name --description --disk-only --live --quiesce --quiesce-best-effort --atomic --halt --reuse-external --no-metadata --validate --diskspec --memspec --live-timeout --no-progress --abort-on-interrupt'
        [create]='--redefine --current --disk-only --live --quiesce --atomic --halt --reuse-external --no-metadata --validate --no-progress --abort-on-interrupt'
        [list]='--tree --name --parent --roots --leaves --no-leaves --metadata --no-metadata --inactive --active --disk-only --internal --external --topological --json='
        [dumpxml]='--security-info --json='
        [info]='--json='
        [current]='--name --security-info --json='
        [revert]='--running --paused --force --no-progress'
        [delete]='--children --children-only --metadata --no-progress'
        [prune]='--keep --dry-run --no-progress --json='
        [abort]=''
        [job]='--json='
        [parent]='--json='
        [redefine]='--current'
        [start]=''
        [stop]='--force'
)

# Options that take the next word as their argument (when not given as --opt=VALUE).
__snapshotctl_global_arg_options='--address --host -H'
declare -A __snapshotctl_verb_arg_options=(
        [create-as]='--name --description --diskspec --memspec --live-timeout'
        [prune]='--keep'
)

__snapshotctl_global_options='--help --version --address= --host= --no-ask-password'

# What follows the verb: "domain", "snapshot" (of that domain) or "file", by position.
declare -A __snapshotctl_verb_args=(
        [create-as]='domain'
        [create]='domain file'
        [list]='domain'
        [dumpxml]='domain snapshot'
        [info]='domain snapshot'
        [current]='domain'
        [revert]='domain snapshot'
        [delete]='domain snapshot'
        [prune]='domain'
        [abort]='domain'
        [job]='domain'
        [parent]='domain snapshot'
        [redefine]='domain file'
        [start]='domain'
        [stop]='domain'
)

__snapshotctl_contains() {
        local w=$1 x
        shift
        for x; do
                [[ $x == "$w" ]] && return 0
        done
        return 1
}

_snapshotctl() {
        local cur prev words cword split
        _init_completion -s -n : || return

        # Walk the line up to the word being completed: the daemon to ask (--address, -H),
        # the verb, and the positional arguments after it.
        local ctl=${words[0]} verb= i w
        local -a bus_args=() args=()
        for ((i = 1; i < cword; i++)); do
                w=${words[i]}
                case $w in
                --address=* | --host=* | -H?*)
                        bus_args+=("$w")
                        ;;
                --address | --host | -H)
                        ((i + 1 < cword)) && bus_args+=("$w" "${words[i + 1]}")
                        ((i++))
                        ;;
                -*)
                        if [[ -n $verb && $w != *=* ]] &&
                                __snapshotctl_contains "$w" ${__snapshotctl_verb_arg_options[$verb]-}; then
                                ((i++))
                        fi
                        ;;
                *)
                        if [[ -z $verb ]]; then
                                verb=$w
                        else
                                args+=("$w")
                        fi
                        ;;
                esac
        done

        # The value of an option: split off --opt=VALUE by _init_completion, or the word
        # after an option that takes one.
        if $split || __snapshotctl_contains "$prev" $__snapshotctl_global_arg_options \
                ${verb:+${__snapshotctl_verb_arg_options[$verb]-}}; then
                case $prev in
                --json)
                        COMPREPLY=($(compgen -W 'pretty short off' -- "$cur"))
                        ;;
                --host | -H)
                        _known_hosts_real -- "$cur"
                        ;;
                esac
                return
        fi

        command -v "$ctl" >/dev/null 2>&1 || ctl=snapshotctl

        if [[ $cur == -* ]]; then
                local opts=$__snapshotctl_global_options
                [[ -z $verb ]] && opts+=' --json='
                [[ -n $verb ]] && opts+=" ${__snapshotctl_verb_options[$verb]-}"
                COMPREPLY=($(compgen -W "$opts" -- "$cur"))
                [[ ${COMPREPLY-} == *= ]] && compopt -o nospace
                return
        fi

        if [[ -z $verb ]]; then
                COMPREPLY=($(compgen -W "$__snapshotctl_verbs help" -- "$cur"))
                return
        fi

        if [[ $verb == help ]]; then
                ((${#args[@]} == 0)) && COMPREPLY=($(compgen -W "$__snapshotctl_verbs" -- "$cur"))
                return
        fi

        local -a kinds=(${__snapshotctl_verb_args[$verb]-})
        local kind=${kinds[${#args[@]}]-}
        local names
        case $kind in
        domain)
                names=$("$ctl" "${bus_args[@]}" --no-ask-password list-domains --name 2>/dev/null)
                ;;
        snapshot)
                names=$("$ctl" "${bus_args[@]}" --no-ask-password list "${args[0]}" --name 2>/dev/null)
                ;;
        file)
                _filedir xml
                return
                ;;
        *)
                return
                ;;
        esac

        # One name a line; names may hold blanks.
        local IFS=$'\n'
        COMPREPLY=($(compgen -W "$names" -- "$cur"))
        __ltrim_colon_completions "$cur"
} &&
        complete -F _snapshotctl snapshotctl

# ex: filetype=sh
