package event

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

// DecodeMessage reads a message body as a kubestream Event: binary protobuf
// (ContentTypeProtobuf, what every sink writes), or protojson when the
// content type says json (the stdout sink's lines).
func DecodeMessage(contentType string, data []byte) (*kubestreamv1.Event, error) {
	ev := &kubestreamv1.Event{}
	if strings.Contains(contentType, "json") {
		if err := protojson.Unmarshal(data, ev); err != nil {
			return nil, fmt.Errorf("decode JSON event: %w", err)
		}
		return ev, nil
	}
	if err := proto.Unmarshal(data, ev); err != nil {
		return nil, fmt.Errorf("decode protobuf event (content-type %q): %w", contentType, err)
	}
	return ev, nil
}
