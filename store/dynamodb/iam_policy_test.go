package dynamodb

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Condition operators and keys the policies rely on.
const (
	leadingKeysOperator = "ForAllValues:StringEquals"
	leadingKeysKey      = "dynamodb:LeadingKeys"
	// StringEquals and not StringEqualsIfExists: a request without an
	// encryption context (a v1 write) must fail the condition, not skip it.
	contextOperator = "StringEquals"
	contextKey      = "kms:EncryptionContext:ApplicationName"
)

// policyDoc is an IAM policy document, as much of it as the test reads.
type policyDoc struct {
	Version   string
	Statement oneOrMany[policyStatement]
}

type policyStatement struct {
	Sid       string
	Effect    string
	Action    oneOrMany[string]
	NotAction oneOrMany[string]
	Condition map[string]map[string]oneOrMany[string]
}

// oneOrMany is a JSON value IAM lets be one element or a list of them.
type oneOrMany[T any] []T

func (m *oneOrMany[T]) UnmarshalJSON(b []byte) error {
	var many []T
	if err := json.Unmarshal(b, &many); err == nil {
		*m = many
		return nil
	}
	var one T
	if err := json.Unmarshal(b, &one); err != nil {
		return err
	}
	*m = oneOrMany[T]{one}
	return nil
}

// actionMatches reports whether the IAM action pattern (with * and ?
// wildcards, case-insensitive, as IAM compares actions) covers action.
func actionMatches(pattern, action string) bool {
	re := regexp.QuoteMeta(pattern)
	re = strings.NewReplacer(`\*`, `.*`, `\?`, `.`).Replace(re)
	return regexp.MustCompile(`(?i)^` + re + `$`).MatchString(action)
}

// actionService is the service prefix of an action pattern ("dynamodb",
// "kms"), lower case; "*" for a pattern that names every service.
func actionService(pattern string) string {
	svc, _, ok := strings.Cut(pattern, ":")
	if !ok {
		return "*"
	}
	return strings.ToLower(svc)
}

// conditionValues are the values a statement's condition gives key under
// operator, condition keys being case-insensitive in IAM.
func conditionValues(st policyStatement, operator, key string) []string {
	for op, keys := range st.Condition {
		if !strings.EqualFold(op, operator) {
			continue
		}
		for k, v := range keys {
			if strings.EqualFold(k, key) {
				return v
			}
		}
	}
	return nil
}

// The example IAM policies of docs/iam are what operators copy to confine
// a host to one application (docs/AWS.md): each must do what the docs say.
func TestIAMPolicies(t *testing.T) {
	// go test runs in the package's directory, two below the module's.
	files, err := filepath.Glob(filepath.Join("..", "..", "docs", "iam", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no policies in docs/iam: the test tested nothing")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range policyProblems(b) {
				t.Error(p)
			}
		})
	}
}

// policyProblems lists what keeps the policy document b from confining a
// host to its applications; none when it does.
func policyProblems(b []byte) []string {
	if !json.Valid(b) {
		return []string{"not valid JSON"}
	}
	var doc policyDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return []string{"not an IAM policy document: " + err.Error()}
	}
	var problems []string
	problem := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if doc.Version != "2012-10-17" {
		problem("Version %q, want 2012-10-17, the current policy language", doc.Version)
	}
	var dynamoStatements, kmsStatements int
	for i, st := range doc.Statement {
		name := st.Sid
		if name == "" {
			name = "statement " + strconv.Itoa(i)
		}
		if !strings.EqualFold(st.Effect, "Allow") {
			continue // a Deny can only narrow what is allowed
		}
		if len(st.NotAction) > 0 {
			problem("%s: Allow with NotAction allows everything it does not list, dynamodb:Scan among it", name)
		}
		var dynamo, kms bool
		for _, a := range st.Action {
			switch actionService(a) {
			case "dynamodb":
				dynamo = true
			case "kms":
				kms = true
			case "*":
				dynamo, kms = true, true
			}
			// ForAllValues is true of a request with no leading keys at
			// all, which a Scan is: the condition cannot stop one, so no
			// statement may allow it.
			if actionMatches(a, "dynamodb:Scan") {
				problem("%s: action %q allows dynamodb:Scan, which reads every application", name, a)
			}
		}
		if dynamo {
			dynamoStatements++
			if keys := conditionValues(st, leadingKeysOperator, leadingKeysKey); len(keys) == 0 {
				problem("%s: DynamoDB actions %q are not restricted by %s on %s", name, st.Action, leadingKeysOperator, leadingKeysKey)
			}
		}
		if kms {
			kmsStatements++
			apps := conditionValues(st, contextOperator, contextKey)
			if len(apps) == 0 {
				problem("%s: KMS actions %q are not conditioned by %s on %s", name, st.Action, contextOperator, contextKey)
			}
			for _, app := range apps {
				if strings.ContainsAny(app, "*?") {
					problem("%s: %s %q is a pattern, not an application", name, contextKey, app)
				}
			}
		}
	}
	if dynamoStatements == 0 || kmsStatements == 0 {
		problem("%d statements allow DynamoDB and %d KMS; a host needs both", dynamoStatements, kmsStatements)
	}
	return problems
}

// The checks themselves: a confining policy passes, and each way of not
// confining a host fails.
func TestIAMPolicyProblems(t *testing.T) {
	const dynamo = `{"Effect":"Allow","Action":["dynamodb:GetItem","dynamodb:Query"],"Resource":"*",
		"Condition":{"ForAllValues:StringEquals":{"dynamodb:LeadingKeys":["billing"]}}}`
	const kms = `{"Effect":"Allow","Action":"kms:Decrypt","Resource":"*",
		"Condition":{"StringEquals":{"kms:EncryptionContext:ApplicationName":"billing"}}}`
	policy := func(statements ...string) []byte {
		return []byte(`{"Version":"2012-10-17","Statement":[` + strings.Join(statements, ",") + `]}`)
	}
	if p := policyProblems(policy(dynamo, kms)); len(p) != 0 {
		t.Fatalf("a confining policy has problems: %q", p)
	}
	for what, b := range map[string][]byte{
		"not JSON":       []byte(`{"Version":"2012-10-17",`),
		"Scan":           policy(strings.Replace(dynamo, `"dynamodb:Query"`, `"dynamodb:Scan"`, 1), kms),
		"dynamodb:*":     policy(strings.Replace(dynamo, `"dynamodb:Query"`, `"dynamodb:*"`, 1), kms),
		"dynamodb:S?an":  policy(strings.Replace(dynamo, `"dynamodb:Query"`, `"DynamoDB:S?an"`, 1), kms),
		"every action":   policy(dynamo, kms, `{"Effect":"Allow","Action":"*","Resource":"*"}`),
		"NotAction":      policy(dynamo, kms, `{"Effect":"Allow","NotAction":"kms:*","Resource":"*"}`),
		"no LeadingKeys": policy(strings.Replace(dynamo, "ForAllValues:StringEquals", "ForAnyValue:StringEquals", 1), kms),
		"IfExists":       policy(dynamo, strings.Replace(kms, `"StringEquals"`, `"StringEqualsIfExists"`, 1)),
		"no context":     policy(dynamo, `{"Effect":"Allow","Action":"kms:Decrypt","Resource":"*"}`),
		"any context":    policy(dynamo, strings.Replace(kms, `"billing"`, `"*"`, 1)),
		"no KMS":         policy(dynamo),
	} {
		if p := policyProblems(b); len(p) == 0 {
			t.Errorf("%s: no problem found", what)
		}
	}
	// IAM lets a statement, an action and a condition value be one
	// element instead of a list.
	one := []byte(`{"Version":"2012-10-17","Statement":` + kms + `}`)
	if p := policyProblems(one); len(p) != 1 || !strings.Contains(p[0], "0 statements allow DynamoDB and 1 KMS") {
		t.Errorf("a single KMS statement: %q; want only the missing DynamoDB statement", p)
	}
}
