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
	Sid         string
	Effect      string
	Principal   principal
	Action      oneOrMany[string]
	NotAction   oneOrMany[string]
	Resource    oneOrMany[string]
	NotResource oneOrMany[string]
	Condition   map[string]map[string]oneOrMany[string]
}

// principal is a key policy statement's Principal: "*", or the AWS
// principals it names (the only kind the examples use).
type principal []string

func (p *principal) UnmarshalJSON(b []byte) error {
	var anyone string
	if err := json.Unmarshal(b, &anyone); err == nil {
		*p = principal{anyone}
		return nil
	}
	var named struct{ AWS oneOrMany[string] }
	if err := json.Unmarshal(b, &named); err != nil {
		return err
	}
	*p = principal(named.AWS)
	return nil
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
func TestIAMPolicies(t *testing.T) { checkDocuments(t, "iam", policyProblems) }

// checkDocuments fails t with the problems found in each JSON document of
// docs/DIR.
func checkDocuments(t *testing.T, dir string, problems func([]byte) []string) {
	// go test runs in the package's directory, two below the module's.
	files, err := filepath.Glob(filepath.Join("..", "..", "docs", dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no documents in docs/%s: the test tested nothing", dir)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems(b) {
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
	var pinned []string // the key ARNs KMS statements allow
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
			// The pinned form (docs/AWS.md): KMS rights on named keys,
			// so that no other key decrypts for the host.
			for _, r := range st.Resource {
				if !strings.HasPrefix(r, "arn:aws:kms:") || strings.ContainsAny(r, "*?") {
					problem("%s: KMS actions on %q, not on named key ARNs", name, r)
				}
			}
			pinned = append(pinned, st.Resource...)
		}
	}
	if dynamoStatements == 0 || kmsStatements == 0 {
		problem("%d statements allow DynamoDB and %d KMS; a host needs both", dynamoStatements, kmsStatements)
	}
	if kmsStatements > 0 && !deniesDecryptOutside(doc.Statement, pinned) {
		problem("no Deny of kms:Decrypt with NotResource %q: a broader policy or another key's policy could still let the host decrypt with other keys", pinned)
	}
	return problems
}

// deniesDecryptOutside reports whether a Deny statement refuses
// kms:Decrypt on every key but the ones listed.
func deniesDecryptOutside(statements []policyStatement, keys []string) bool {
	for _, st := range statements {
		if !strings.EqualFold(st.Effect, "Deny") || len(st.Resource) > 0 || len(st.NotResource) == 0 {
			continue
		}
		denied := false
		for _, a := range st.Action {
			denied = denied || actionMatches(a, "kms:Decrypt")
		}
		if denied && len(st.Condition) == 0 && subset(st.NotResource, keys) {
			return true
		}
	}
	return false
}

// subset reports whether every element of a is in b.
func subset(a, b []string) bool {
	for _, x := range a {
		found := false
		for _, y := range b {
			found = found || x == y
		}
		if !found {
			return false
		}
	}
	return true
}

// The example key policy of docs/iam/key-policy is what docs/AWS.md
// tells operators to give a trusted key: the host's role may resolve the
// key (DescribeKey has no encryption context) and use it for its own
// application only.
func TestKeyPolicies(t *testing.T) { checkDocuments(t, "iam/key-policy", keyPolicyProblems) }

// keyPolicyProblems lists what keeps the key policy b from confining
// the principals it names, other than the account's root (which
// administers the key and delegates to IAM), to their applications.
func keyPolicyProblems(b []byte) []string {
	var doc policyDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return []string{"not a key policy document: " + err.Error()}
	}
	var problems []string
	problem := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if doc.Version != "2012-10-17" {
		problem("Version %q, want 2012-10-17, the current policy language", doc.Version)
	}
	var hostsDecrypt, hostsDescribe bool
	for i, st := range doc.Statement {
		name := st.Sid
		if name == "" {
			name = "statement " + strconv.Itoa(i)
		}
		if !strings.EqualFold(st.Effect, "Allow") || accountRootsOnly(st.Principal) {
			continue
		}
		for _, a := range st.Action {
			switch {
			case actionMatches(a, "kms:Decrypt") || actionMatches(a, "kms:GenerateDataKey"):
				hostsDecrypt = true
				apps := conditionValues(st, contextOperator, contextKey)
				if len(apps) == 0 {
					problem("%s: %q for %q without %s on %s", name, a, st.Principal, contextOperator, contextKey)
				}
				for _, app := range apps {
					if strings.ContainsAny(app, "*?") {
						problem("%s: %s %q is a pattern, not an application", name, contextKey, app)
					}
				}
			case strings.EqualFold(a, "kms:DescribeKey"):
				hostsDescribe = true
			default:
				problem("%s: %q for %q: a host needs Decrypt, GenerateDataKey and DescribeKey only", name, a, st.Principal)
			}
		}
	}
	if !hostsDecrypt || !hostsDescribe {
		problem("no host may both decrypt (%v) and resolve the key at start (%v)", hostsDecrypt, hostsDescribe)
	}
	return problems
}

// accountRootsOnly reports whether p names only accounts' root
// principals, which delegate the key's use to IAM policies.
func accountRootsOnly(p principal) bool {
	for _, arn := range p {
		if !strings.HasSuffix(arn, ":root") {
			return false
		}
	}
	return len(p) > 0
}

// The checks themselves: a confining policy passes, and each way of not
// confining a host fails.
func TestIAMPolicyProblems(t *testing.T) {
	const dynamo = `{"Effect":"Allow","Action":["dynamodb:GetItem","dynamodb:Query"],"Resource":"*",
		"Condition":{"ForAllValues:StringEquals":{"dynamodb:LeadingKeys":["billing"]}}}`
	const key = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	const kms = `{"Effect":"Allow","Action":"kms:Decrypt","Resource":"` + key + `",
		"Condition":{"StringEquals":{"kms:EncryptionContext:ApplicationName":"billing"}}}`
	const deny = `{"Effect":"Deny","Action":["kms:Decrypt","kms:GenerateDataKey"],"NotResource":["` + key + `"]}`
	policy := func(statements ...string) []byte {
		return []byte(`{"Version":"2012-10-17","Statement":[` + strings.Join(statements, ",") + `]}`)
	}
	if p := policyProblems(policy(dynamo, kms, deny)); len(p) != 0 {
		t.Fatalf("a confining policy has problems: %q", p)
	}
	for what, b := range map[string][]byte{
		"not JSON":       []byte(`{"Version":"2012-10-17",`),
		"Scan":           policy(strings.Replace(dynamo, `"dynamodb:Query"`, `"dynamodb:Scan"`, 1), kms, deny),
		"dynamodb:*":     policy(strings.Replace(dynamo, `"dynamodb:Query"`, `"dynamodb:*"`, 1), kms, deny),
		"dynamodb:S?an":  policy(strings.Replace(dynamo, `"dynamodb:Query"`, `"DynamoDB:S?an"`, 1), kms, deny),
		"every action":   policy(dynamo, kms, deny, `{"Effect":"Allow","Action":"*","Resource":"*"}`),
		"NotAction":      policy(dynamo, kms, deny, `{"Effect":"Allow","NotAction":"kms:*","Resource":"*"}`),
		"no LeadingKeys": policy(strings.Replace(dynamo, "ForAllValues:StringEquals", "ForAnyValue:StringEquals", 1), kms, deny),
		"IfExists":       policy(dynamo, strings.Replace(kms, `"StringEquals"`, `"StringEqualsIfExists"`, 1), deny),
		"no context":     policy(dynamo, `{"Effect":"Allow","Action":"kms:Decrypt","Resource":"`+key+`"}`, deny),
		"any context":    policy(dynamo, strings.Replace(kms, `"billing"`, `"*"`, 1), deny),
		"no KMS":         policy(dynamo),
		"any key":        policy(dynamo, strings.Replace(kms, key, "*", 1), strings.Replace(deny, key, "*", 1)),
		"key pattern":    policy(dynamo, strings.Replace(kms, "key/1234", "key/*", 1), deny),
		"no Deny":        policy(dynamo, kms),
		"Deny elsewhere": policy(dynamo, kms, strings.Replace(deny, "1234abcd", "0987dcba", 1)),
		"Deny, if":       policy(dynamo, kms, strings.Replace(deny, `}`, `,"Condition":{"Bool":{"aws:ViaAWSService":"false"}}}`, 1)),
	} {
		if p := policyProblems(b); len(p) == 0 {
			t.Errorf("%s: no problem found", what)
		}
	}
	// IAM lets a statement, an action and a condition value be one
	// element instead of a list.
	one := []byte(`{"Version":"2012-10-17","Statement":` + kms + `}`)
	if p := policyProblems(one); len(p) != 2 || !strings.Contains(p[0], "0 statements allow DynamoDB and 1 KMS") || !strings.Contains(p[1], "no Deny") {
		t.Errorf("a single KMS statement: %q; want only the missing DynamoDB statement and Deny", p)
	}
}

// The key policy checks: the example's shape passes, and each way of
// letting a host use the key beyond its application fails.
func TestKeyPolicyProblems(t *testing.T) {
	const admin = `{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}`
	const describe = `{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/host"},"Action":"kms:DescribeKey","Resource":"*"}`
	const use = `{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::111122223333:role/host"]},"Action":["kms:Decrypt","kms:GenerateDataKey"],"Resource":"*",
		"Condition":{"StringEquals":{"kms:EncryptionContext:ApplicationName":"billing"}}}`
	policy := func(statements ...string) []byte {
		return []byte(`{"Version":"2012-10-17","Statement":[` + strings.Join(statements, ",") + `]}`)
	}
	if p := keyPolicyProblems(policy(admin, describe, use)); len(p) != 0 {
		t.Fatalf("a confining key policy has problems: %q", p)
	}
	for what, b := range map[string][]byte{
		"not JSON":        []byte(`{"Version":"2012-10-17",`),
		"no context":      policy(admin, describe, strings.Replace(use, "StringEquals", "StringEqualsIfExists", 1)),
		"any context":     policy(admin, describe, strings.Replace(use, `"billing"`, `"bill*"`, 1)),
		"kms:* for hosts": policy(admin, describe, use, strings.Replace(admin, ":root", ":role/host", 1)),
		"anyone":          policy(admin, describe, use, `{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}`),
		"no DescribeKey":  policy(admin, use),
		"no Decrypt":      policy(admin, describe),
		"ReEncrypt":       policy(admin, describe, strings.Replace(use, `"kms:GenerateDataKey"`, `"kms:ReEncrypt*"`, 1)),
	} {
		if p := keyPolicyProblems(b); len(p) == 0 {
			t.Errorf("%s: no problem found", what)
		}
	}
}
