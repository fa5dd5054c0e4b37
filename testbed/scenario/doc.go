// Package scenario owns the scenario format: the types a user's YAML decodes into, the strict
// decoder (every error as file:line:column: field.path: message), parameters, defaults,
// validation and the JSON Schema. Nothing here reads or changes the host.
package scenario
