package sipvm

import (
	"embed"
	"fmt"
	"strconv"

	"github.com/voicering/voicering/sipvm/media"
)

// The prompts are spoken by espeak-ng and converted by sox to 16-bit PCM
// mono 8 kHz; testdata/prompts/make.sh regenerates them.
//
//go:embed assets/*.wav
var assets embed.FS

// prompts holds the decoded prompts of one voicemail service.
type prompts map[string][]int16

func loadPrompts() (prompts, error) {
	ents, err := assets.ReadDir("assets")
	if err != nil {
		return nil, err
	}
	p := prompts{}
	for _, e := range ents {
		f, err := assets.Open("assets/" + e.Name())
		if err != nil {
			return nil, err
		}
		pcm, err := media.ReadPCM(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("sipvm: prompt %s: %w", e.Name(), err)
		}
		p[e.Name()[:len(e.Name())-4]] = pcm
	}
	return p, nil
}

// say joins the named prompts.
func (p prompts) say(names ...string) []int16 {
	var out []int16
	for _, n := range names {
		out = append(out, p[n]...)
	}
	return out
}

// number is the prompt name of n (capped at 20, the largest spoken).
func number(n int) string { return "n" + strconv.Itoa(min(n, 20)) }
