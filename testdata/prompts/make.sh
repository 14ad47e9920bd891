#!/bin/sh
# Regenerates the voicemail prompts (sipvm/assets/*.wav, embedded in the
# binary) and the test speech (testdata/audio/speech.wav): espeak-ng speaks,
# sox converts to 16-bit PCM mono 8 kHz. Needs espeak-ng and sox
# (apt-get install espeak-ng sox). Run from anywhere: ./testdata/prompts/make.sh
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$root/sipvm/assets
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
say() { # say NAME TEXT
	espeak-ng -v en-us -s 150 -w "$tmp/$1.wav" "$2"
	sox "$tmp/$1.wav" -r 8000 -c 1 -b 16 -e signed-integer "$out/$1.wav"
}
say greeting "The person you are calling is not available. Please leave a message after the tone."
say youhave "You have"
say new "new"
say saved "saved"
say and "and"
say messages "messages"
say message "message"
say menu "Press 1 to replay, 7 to delete, 9 to save, pound for next, 0 to record a new greeting."
say deleted "Message deleted."
say savedmsg "Message saved."
say recordgreeting "Record your greeting after the tone. Press pound when done."
say nomore "No more messages."
say endmenu "Press 0 to record a new greeting, or hang up."
say goodbye "Goodbye."
for n in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
	say "n$n" "$n"
done
sox -n -r 8000 -c 1 -b 16 -e signed-integer "$out/beep.wav" synth 0.4 sine 1000 vol 0.5
# About 5 s of real speech for the tests.
espeak-ng -v en-us -s 140 -w "$tmp/speech.wav" "Hello Alice, this is Bob. Call me back about the meeting tomorrow morning at nine, thanks."
sox "$tmp/speech.wav" -r 8000 -c 1 -b 16 -e signed-integer "$root/testdata/audio/speech.wav" trim 0 5
