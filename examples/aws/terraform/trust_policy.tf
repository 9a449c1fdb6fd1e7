# The role's trust policy. It depends on nothing but the variables and the provider ARN, so
# it can be evaluated (and is tested) without AWS. Of a GitLab token, AWS lets a trust
# policy test only sub and aud: everything about the job is said through sub.
locals {
  provider_host = trimprefix(var.gitlab_url, "https://")
  audience      = coalesce(var.audience, var.gitlab_url)
  subjects = distinct([
    for path in var.project_paths : "project_path:${path}:ref_type:${var.ref_type}:ref:${var.ref}"
  ])

  # StringEquals for exact subjects, StringLike only for patterns. All conditions of one
  # statement must hold, so each kind gets a statement of its own.
  exact_subjects   = [for s in local.subjects : s if length(regexall("[*?]", s)) == 0]
  pattern_subjects = [for s in local.subjects : s if length(regexall("[*?]", s)) > 0]

  trust_policy = {
    Version = "2012-10-17"
    Statement = concat(
      length(local.exact_subjects) == 0 ? [] : [{
        Effect    = "Allow"
        Principal = { Federated = local.oidc_provider_arn }
        Action    = "sts:AssumeRoleWithWebIdentity"
        Condition = {
          StringEquals = {
            "${local.provider_host}:aud" = local.audience
            "${local.provider_host}:sub" = local.exact_subjects
          }
        }
      }],
      length(local.pattern_subjects) == 0 ? [] : [{
        Effect    = "Allow"
        Principal = { Federated = local.oidc_provider_arn }
        Action    = "sts:AssumeRoleWithWebIdentity"
        Condition = {
          StringEquals = { "${local.provider_host}:aud" = local.audience }
          StringLike   = { "${local.provider_host}:sub" = local.pattern_subjects }
        }
      }],
    )
  }
}
