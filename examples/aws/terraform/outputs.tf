output "role_arn" {
  description = "Set this as AWS_ROLE_ARN in the GitLab jobs."
  value       = aws_iam_role.this.arn
}

output "oidc_provider_arn" {
  description = "The IAM OIDC provider (give it as existing_provider_arn to further roles)."
  value       = local.oidc_provider_arn
}

output "trust_policy" {
  description = "The role's trust policy, as JSON."
  value       = jsonencode(local.trust_policy)
}
